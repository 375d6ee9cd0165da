"""`casepool serve` under load on loopback: 40 concurrent two-dimension queries (p95 latency, goal
< 300 ms on 2 cores), then a steady 200 requests/s for a minute (goal: no errors).

The quarters are measured first (by `query` in this process, before the service starts: the
first question after new data measures, once). Then through the service: each of 8 pairs alone;
40 concurrent questions none of which was asked before (8 pairs × 5 periods: each read from the
stored measurements on a read-only connection); 40 concurrent questions among the 8 asked before
(`--rounds` times: answered from the cache); and the steady load. Before the service starts, the
CPU one new answer costs in-process (`answer_cpu`: no HTTP, no ledger entry).

The service runs as `casepool serve` in its own process over a copy of the demo warehouse
(`casepool demo`, or `--warehouse`); the client is plain threads with keep-alive connections.
Loops are bounded: the queries are 40 × `--rounds`, the load is 200 × `--seconds` requests.

    .venv/bin/python bench/serve_bench.py                     # demo warehouse, 60 s of load
    .venv/bin/python bench/serve_bench.py --warehouse demo_output/warehouse.duckdb --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CASEPOOL = str(Path(sys.executable).with_name("casepool"))
PAIRS = [  # two-way tables the default workload (schemas/protection.yaml) can answer
    ("governorate", "sex"),
    ("region", "sex"),
    ("age_band", "sex"),
    ("population_group", "sex"),
    ("exploitation_type", "sex"),
    ("violence_type", "justice_outcome"),
    ("service", "sex"),
    ("service_barrier", "sex"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_account(warehouse: Path, name: str) -> str:
    done = subprocess.run(
        [CASEPOOL, "user", "add", name, "--role", "analyst", "-w", str(warehouse), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(done.stdout)["token"])


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def request(self, method: str, path: str, token: str, body: dict | None = None) -> int:
        con = getattr(self.local, "con", None)
        if con is None:
            con = self.local.con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            con.request(method, path, body=data, headers=headers)
            answer = con.getresponse()
            answer.read()
            return answer.status
        except (OSError, http.client.HTTPException):
            self.local.con = None
            return 0


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) the process has used, in ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, phase: dict[str, object], before: float, count: int) -> dict[str, object]:
    """The phase's figures with the service's CPU time per request: on a machine other work also
    loads, latency varies with it; the CPU a request costs does not."""
    return phase | {"service_cpu_ms_per_request": round((cpu_ms(pid) - before) / count, 2)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


COLD_PERIODS = [
    {"period": "2024"},
    {"period": "2023"},
    {},
    {"period": "2025-Q1"},
    {"period": "2025-Q2"},
]


def question(by: tuple[str, str], where: dict[str, str]) -> dict[str, object]:
    return {"indicator": "registered_cases", "by": list(by), "where": where}


def concurrent_queries(
    client: Client, tokens: list[str], questions: list[dict[str, object]], rounds: int
) -> dict[str, object]:
    """`rounds` times, 40 questions sent at once from 40 threads."""
    latencies: list[float] = []
    statuses: list[int] = []

    def one(i: int) -> None:
        started = time.perf_counter()
        status = client.request(
            "POST", "/api/query", tokens[i % len(tokens)], questions[i % len(questions)]
        )
        latencies.append((time.perf_counter() - started) * 1000)
        statuses.append(status)

    for _ in range(rounds):
        with ThreadPoolExecutor(max_workers=40) as pool:
            list(pool.map(one, range(40)))
    return {
        "queries": len(latencies),
        "distinct_questions": len({json.dumps(q, sort_keys=True) for q in questions}),
        "errors": sum(s != 200 for s in statuses),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
    }


def library_times(warehouse: Path) -> dict[str, object]:
    """Each pair asked by calling `query` in this process, before the service starts (the first
    call measures the 2025 quarters; one question without a period measures the others)."""
    from casepool.publishing.query import query

    started = time.perf_counter()
    query(warehouse, "registered_cases", by=("sex",))
    measuring = (time.perf_counter() - started) * 1000
    direct = []
    for by in PAIRS:
        started = time.perf_counter()
        query(warehouse, "registered_cases", by=by, where=["period=2025"])
        direct.append((time.perf_counter() - started) * 1000)
    return {
        "measuring_all_quarters_ms": round(measuring),
        "library_median_ms": round(statistics.median(direct), 1),
        "library_ms": [round(v) for v in direct],
    }


def answer_cpu(warehouse: Path) -> dict[str, object]:
    """CPU per new answer in this process (`Answers`, as the service answers; no HTTP, no
    ledger entry): the 40 questions of the concurrent phase one after another, after one
    question has read the data version's snapshot; then the 8 pairs over all quarters on a
    fresh `Answers` (no quarter of theirs computed before: the dearest new questions)."""
    from casepool.serving.access import Warehouse
    from casepool.serving.answering import Answers

    def cpu_per(answers: Answers, questions: list[tuple[tuple[str, str], dict[str, str]]]) -> float:
        started = time.process_time()
        for by, where in questions:
            pairs = [(k, [v]) for k, v in where.items()]
            assert not answers.answer("registered_cases", list(by), pairs, actor="bench").cached
        return round((time.process_time() - started) * 1000 / len(questions), 2)

    mix = Answers(Warehouse(warehouse))
    mix.answer("registered_cases", ["sex"], [], actor="bench")
    fresh = Answers(Warehouse(warehouse))
    fresh.answer("registered_cases", ["sex"], [], actor="bench")
    return {
        "cpu_ms_per_new_answer_40_questions": cpu_per(
            mix, [(by, where) for where in COLD_PERIODS for by in PAIRS]
        ),
        "cpu_ms_per_new_answer_all_quarters_fresh": cpu_per(fresh, [(by, {}) for by in PAIRS]),
    }


def served_times(client: Client, token: str) -> dict[str, object]:
    """Each pair asked alone through the service, the first time (read from the measurements),
    then again (from the cache)."""
    first, again = [], []
    for by in PAIRS:
        for times in (first, again):
            started = time.perf_counter()
            assert (
                client.request("POST", "/api/query", token, question(by, {"period": "2025"})) == 200
            )
            times.append((time.perf_counter() - started) * 1000)
    return {
        "first_asking_median_ms": round(statistics.median(first), 1),
        "asked_again_median_ms": round(statistics.median(again), 1),
        "first_asking_ms": [round(v) for v in first],
    }


def steady_load(client: Client, tokens: list[str], rate: int, seconds: int) -> dict[str, object]:
    """`rate` requests a second, each at its scheduled time (open loop), for `seconds` seconds:
    the indicator listing, and every 100th request a one-dimension query."""
    total = rate * seconds
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.5
    counter = itertools.count()

    def worker() -> None:
        while True:
            i = next(counter)
            if i >= total:
                return
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            token = tokens[i % len(tokens)]
            began = time.perf_counter()
            if i % 100 == 0:
                body = {"indicator": "registered_cases", "by": ["sex"]}
                status = client.request("POST", "/api/query", token, body)
            else:
                status = client.request("GET", "/api/indicators", token)
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)
                statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "requests": len(statuses),
        "seconds": round(elapsed, 1),
        "achieved_per_second": round(len(statuses) / elapsed, 1),
        "errors": sum(s != 200 for s in statuses),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--warehouse", type=Path, help="a warehouse to copy (default: casepool demo)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 40 concurrent queries")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="casepool-serve-bench-") as folder:
        warehouse = Path(folder) / "warehouse.duckdb"
        if args.warehouse:
            shutil.copyfile(args.warehouse, warehouse)
        else:
            subprocess.run(
                [CASEPOOL, "demo", "--workdir", str(Path(folder) / "demo")],
                check=True,
                capture_output=True,
            )
            shutil.copyfile(Path(folder) / "demo" / "warehouse.duckdb", warehouse)
        tokens = [add_account(warehouse, f"bench{i}") for i in range(4)]
        library = library_times(warehouse)
        in_process = answer_cpu(warehouse)
        port = free_port()
        server = subprocess.Popen(
            [
                CASEPOOL,
                "serve",
                "-w",
                str(warehouse),
                "--port",
                str(port),
                "--requests-per-minute",
                "1000000",
                "--queries-per-minute",
                "1000000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = Client(port)
            deadline = time.monotonic() + 30
            while client.request("GET", "/api/indicators", tokens[0]) != 200:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the service did not start")
                time.sleep(0.2)
            pid = server.pid
            one_at_a_time = served_times(client, tokens[0]) | library
            cold = [question(by, where) for where in COLD_PERIODS for by in PAIRS]
            warm = [question(by, {"period": "2025"}) for by in PAIRS]
            time.sleep(2)  # the ledger writer has written the entries of the questions above
            # The CPU of each phase is taken 2 s after it: it includes writing its ledger
            # entries (the writer waits for a burst of answers to end).
            before = cpu_ms(pid)
            cold_result = concurrent_queries(client, tokens, cold, 1)
            time.sleep(2)
            cold_result = with_cpu(pid, cold_result, before, 40)
            before = cpu_ms(pid)
            warm_result = concurrent_queries(client, tokens, warm, args.rounds)
            time.sleep(2)
            warm_result = with_cpu(pid, warm_result, before, 40 * args.rounds)
            before = cpu_ms(pid)
            load = steady_load(client, tokens, args.rate, args.seconds)
            load = with_cpu(pid, load, before, int(load["requests"]))  # type: ignore[call-overload]
            with open("/proc/loadavg") as f:
                machine_load = f.read().split()[:3]
            result = {
                "cores": os.cpu_count(),
                "machine_load_average_1_5_15_min": machine_load,
                "one_query_at_a_time": one_at_a_time,
                "answering_in_process": in_process,
                "concurrent_2d_queries_not_asked_before": cold_result,
                "concurrent_2d_queries": warm_result,
                "steady_load": load,
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
