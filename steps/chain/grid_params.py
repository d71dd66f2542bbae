"""Output-grid parameters shared by ``drizzle_separate`` and ``drizzle_final``,
and their resolution into a :class:`~.output_wcs.Grid`."""
from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from drizzleflow.engine.errors import StepError
from drizzleflow.engine.legacy import OptionalFloat

from .output_wcs import check_size, custom_grid, default_grid, grid_from_image

__all__ = ["GridFields", "resolve_grid", "grid_key_files", "GRID_ALIASES"]


def GRID_ALIASES(prefix: str) -> dict[str, str]:
    """AstroDrizzle flat names (``final_scale`` ...) for the grid fields."""
    return {f"{prefix}_{k}": k for k in ("wcs", "scale", "rot", "outnx", "outny", "ra", "dec",
                                         "crpix1", "crpix2", "refimage")}


class GridFields(BaseModel):
    """Mixin of grid fields (pydantic fields are inherited by the step Params)."""

    wcs: bool = Field(True, description="Apply the custom grid values below (AstroDrizzle "
                      "`final_wcs`/`driz_sep_wcs`). Unlike AstroDrizzle, giving a value is enough; "
                      "set false to ignore them.")
    scale: OptionalFloat = Field(None, description="Output pixel scale, arcsec. Default: the nominal "
                                 "scale of the reference chip (first chip = WFPC2 PC, 0.0455″).")
    rot: OptionalFloat = Field(None, description="Position angle of the output +Y axis, degrees east "
                               "of north (0 = north up). Default: the reference chip's orientation.")
    outnx: int | None = Field(None, ge=1, description="Output width in pixels (with outny).")
    outny: int | None = Field(None, ge=1, description="Output height in pixels (with outnx).")
    ra: OptionalFloat = Field(None, description="RA of the output tangent point, deg (with dec).")
    dec: OptionalFloat = Field(None, ge=-90, le=90, description="Dec of the tangent point, deg (with ra).")
    crpix1: OptionalFloat = Field(None, description="Reference pixel x (1-based) when outnx/outny given.")
    crpix2: OptionalFloat = Field(None, description="Reference pixel y (1-based) when outnx/outny given.")
    refimage: str = Field("", description="FITS image whose WCS and size define the output grid.")
    ref_chip: int | None = Field(None, ge=1, le=4, description="Detector number whose scale and "
                                 "orientation define the default grid (default: the first chip read).")

    @model_validator(mode="after")
    def _pairs(self):
        if self.scale is not None and self.scale <= 0:
            raise ValueError("scale must be > 0 arcsec")
        if (self.outnx is None) != (self.outny is None):
            raise ValueError("outnx and outny must be given together")
        if (self.ra is None) != (self.dec is None):
            raise ValueError("ra and dec must be given together")
        return self


def resolve_grid(params, chips, step: str, force: bool, custom: bool = True):
    """Build the output grid for ``chips`` from grid parameters."""
    chips = list(chips)
    use = custom and params.wcs
    try:
        if use and params.refimage:
            grid = grid_from_image(params.refimage)
        else:
            ref = None
            if params.ref_chip is not None:
                ref = next((c for c in chips if c.detector == params.ref_chip), None)
                if ref is None:
                    raise ValueError(f"ref_chip {params.ref_chip}: no such chip in the inputs")
            grid = default_grid(chips, ref=ref,
                                scale=params.scale if use else None,
                                rot=params.rot if use else None,
                                ra=params.ra if use else None, dec=params.dec if use else None)
            if use:
                grid = custom_grid(grid, params.outnx, params.outny, params.crpix1, params.crpix2)
        check_size(grid, force)
    except (ValueError, OSError) as exc:
        raise StepError(step, f"output grid: {exc}") from None
    return grid


def grid_key_files(params) -> list:
    """The reference image a custom grid is read from (``Step.key_files``)."""
    return [params.refimage] if params.wcs and params.refimage else []
