"""FITS WCS bookkeeping shared by ingest/updatewcs and alignment: alternate WCS
keys (FITS Paper I), the ``WCSCORR`` history table and headerlets, written so
that stwcs/DrizzlePac read them (conventions learned from stwcs, not its code)."""
