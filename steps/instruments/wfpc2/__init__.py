"""WFPC2 file I/O: archive c0m/c1m and waivered c0f/c1f inputs, the working
copies the chain writes to, updatewcs (IDCTAB/OFFTAB/DGEOFILE -> SIP + D2IM),
and the in-memory Exposure model."""
from .constants import DQ_FLAGS, GAIN_TABLE, NAN_BIT, detector_gain
from .files import InputPair, check_inputs, check_pair, dq_partner, read_fits
from .reader import chip_wcs, open_exposure
from .updatewcs import is_converted, update_wcs, update_wcs_file
from .waivered import mef_to_waivered, waivered_to_mef
from .workcopy import patched_copy, set_sci_keywords, update_chip_wcs, write_dq

__all__ = ["open_exposure", "chip_wcs", "check_inputs", "check_pair", "dq_partner", "read_fits", "InputPair",
           "waivered_to_mef", "mef_to_waivered", "write_dq", "patched_copy", "set_sci_keywords", "update_chip_wcs",
           "GAIN_TABLE", "DQ_FLAGS", "NAN_BIT", "detector_gain", "update_wcs", "update_wcs_file", "is_converted"]
