"""QGIS layer style (``.qml``) so a GeoTIFF opens with a sensible pseudocolour ramp and no-data transparent."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import numpy as np


def qml_style(array: np.ndarray, *, band: int = 1, cmap: str = "viridis", stops: int = 9, label: str = "",
              transparent_zero: bool = True) -> str:
    """QGIS singleband-pseudocolour style for ``band`` stretched over the finite min..max of ``array``.

    No-data cells are always transparent. With ``transparent_zero`` (the default) cells whose value is exactly 0
    are transparent too: in a diversity map those are the cells with no record within the smoothing kernel
    (or, for ``n_records``, no record at all), which would otherwise paint sparse data as a map of zeros.
    Untick the entry under Layer Properties → Transparency in QGIS to show them.
    """
    from matplotlib import colormaps

    finite = np.asarray(array, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1.0
    ramp = colormaps[cmap]
    items = []
    for i in range(stops):
        t = i / (stops - 1)
        r, g, b, _ = (int(round(255 * c)) for c in ramp(t))
        value = vmin + t * (vmax - vmin)
        items.append(
            f'          <item alpha="255" value="{value:.6g}" label="{value:.4g}" color="#{r:02x}{g:02x}{b:02x}"/>'
        )
    return "\n".join([
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>",
        '<qgis version="3.28.0" styleCategories="AllStyleCategories">',
        "  <pipe>",
        f'    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" alphaBand="-1" '
        f'classificationMin="{vmin:.6g}" classificationMax="{vmax:.6g}" nodataColor="">',
        _transparency(transparent_zero),
        f"      <rastershader><colorrampshader colorRampType=\"INTERPOLATED\" classificationMode=\"1\" "
        f"clip=\"0\" minimumValue=\"{vmin:.6g}\" maximumValue=\"{vmax:.6g}\" labelPrecision=\"4\">",
        *items,
        "      </colorrampshader></rastershader>",
        "    </rasterrenderer>",
        "  </pipe>",
        f"  <customproperties><Option type=\"Map\"><Option name=\"geoprom3e_label\" type=\"QString\" "
        f"value={quoteattr(label)}/></Option></customproperties>",
        "  <blendMode>0</blendMode>",
        "</qgis>",
        "",
    ])


def _transparency(zero: bool) -> str:
    if not zero:
        return "      <rasterTransparency/>"
    return ("      <rasterTransparency><singleValuePixelList>"
            '<pixelListEntry min="0" max="0" percentTransparent="100"/>'
            "</singleValuePixelList></rasterTransparency>")
