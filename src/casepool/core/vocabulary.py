"""The words every stage shares: the SDMX total code, the tidy table's columns, the record-key scale."""

from __future__ import annotations

TOTAL = "_T"  # SDMX code for "all categories" of a dimension
VALUE = "value"
OBS_STATUS = "obs_status"  # SDMX: A normal, Q suppressed
CONF_STATUS = "conf_status"  # SDMX: F free, C primary confidential, D secondary
STATUS_COLUMNS = (VALUE, OBS_STATUS, CONF_STATUS)
CONTRIBUTOR = "contributor"  # the organisation a count came from
CELL_KEY = "cell_key"
KEY_BITS = 32
KEY_SCALE = 2**KEY_BITS  # record keys are held as whole multiples of 2**-32: sums are exact
