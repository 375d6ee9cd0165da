"""How library results read on a terminal: one module per stage; the library itself returns data."""
