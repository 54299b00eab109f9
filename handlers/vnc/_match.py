"""Find a template image on a screen (``WaitForIt``, ``ClickItEvent``).

2.8 slides the grey template over the grey screen and takes the place with
the lowest mean absolute difference, a match when that is at most 20. A
brute-force scan is hundreds of millions of steps for a screen, so the place
is found here by the sum of squared differences computed with FFTs (numpy),
and 2.8's mean absolute difference and cut-off are then checked there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# numpy is imported where a screen is matched, not with the node (issue 16's idle memory)
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from megabus.handlers.vnc.rfb import Frame

    Gray = npt.NDArray[np.float64]

#: 2.8's cut-off: "20 seems to be a decent cut off".
MAX_MEAN_DIFF = 20.0


def _gray(rgb: Frame) -> Gray:
    import numpy as np

    img = rgb.astype(np.float64)
    return 0.299 * img[:, :, 0] + 0.587 * img[:, :, 1] + 0.114 * img[:, :, 2]


def find(screen: Frame, template: Frame) -> tuple[int, int] | None:
    """The centre of ``template`` on ``screen``, or None when it is not there."""
    import numpy as np

    img = _gray(screen)
    tpl = _gray(template)
    ih, iw = img.shape
    th, tw = tpl.shape
    if th == 0 or tw == 0 or th > ih or tw > iw:
        return None
    # correlation of the screen with the template, for every top-left corner
    shape = (ih + th, iw + tw)
    corr = np.fft.irfft2(np.fft.rfft2(img, shape) * np.fft.rfft2(tpl[::-1, ::-1], shape), shape)
    corr = corr[th - 1 : ih, tw - 1 : iw]
    # the sum of squares of the screen under each window, from an integral image
    sq = np.pad(np.cumsum(np.cumsum(img * img, 0), 1), ((1, 0), (1, 0)))
    win = sq[th:, tw:] - sq[:-th, tw:] - sq[th:, :-tw] + sq[:-th, :-tw]
    ssd = win - 2 * corr + float((tpl * tpl).sum())
    y, x = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
    mean_diff = float(np.abs(img[y : y + th, x : x + tw] - tpl).mean())
    if mean_diff > MAX_MEAN_DIFF:
        return None
    return int(x) + tw // 2, int(y) + th // 2
