"""Anti-aliased OpenCV rendering of a procedural face (:func:`render_face`).

Rendering draws on a canvas at twice the output resolution (cv2 anti-aliased primitives with
sub-pixel coordinates), warps it to the output and downsamples it with area averaging. Shading,
the per-identity skin texture and the colour cast are applied at the output resolution. Pixel
coordinates follow the OpenCV convention (pixel ``i`` is centred on ``i``); the returned landmarks
are exact (the points the features were drawn at, pushed through the same transforms).

Geometry, identities and nuisance come from :mod:`.faces`.  The module is one cohesive thing, the
painter and the drawing of every facial feature in the order they overlap, hence its length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from marginlab.data.synthetic.faces import CX, TEXTURE_N, Identity, Nuisance

__all__ = ["RenderedFace", "face_landmarks", "render_face"]

_SS = 2  # supersampling factor of the drawing canvas
_SHIFT = 4  # cv2 fixed-point fractional bits of drawing coordinates
_ONE = 1 << _SHIFT


# --------------------------------------------------------------------------- drawing
class _Painter:
    """Draws template-frame shapes on the canvas, projecting yaw: x → cx + (x-cx)cos + z sin."""

    def __init__(self, img: np.ndarray, k: float, origin: tuple[float, float], yaw: float):
        self.img = img
        self.k = k
        self.ox, self.oy = origin
        self.cos = math.cos(yaw)
        self.sin = math.sin(yaw)
        self.half = (_SS - 1) / 2.0

    def fixed(self, x, y, z=0.0) -> np.ndarray:
        """Fixed-point canvas coordinates (N, 2) int32 of projected template points."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        kk = self.k * _ONE
        px = x * (self.cos * kk) + np.asarray(z, dtype=np.float64) * (self.sin * kk) + ((CX * (1 - self.cos) - self.ox) * kk + self.half * _ONE)
        py = y * kk + (self.half * _ONE - self.oy * kk)
        px, py = np.broadcast_arrays(px, py)
        out = np.empty(px.shape + (2,), dtype=np.int32)
        np.rint(px, out=out[..., 0], casting="unsafe")
        np.rint(py, out=out[..., 1], casting="unsafe")
        return out

    def ellipse(self, x, y, z, ax, ay, color, angle=0.0, thickness=-1.0, start=0.0, end=360.0, foreshorten=True):
        # scalar fast path of fixed(): this is called ~30 times per face
        px = ((CX + (x - CX) * self.cos + z * self.sin) - self.ox) * self.k + self.half
        py = (y - self.oy) * self.k + self.half
        c = (round(px * _ONE), round(py * _ONE))
        axx = ax * (self.cos if foreshorten else 1.0)
        axes = (max(1, int(round(axx * self.k * _ONE))), max(1, int(round(ay * self.k * _ONE))))
        th = -1 if thickness < 0 else max(1, int(round(thickness * self.k)))
        cv2.ellipse(self.img, (int(c[0]), int(c[1])), axes, angle, start, end, color, th, cv2.LINE_AA, _SHIFT)

    def poly(self, xs, ys, zs, color, fill=True, thickness=1.0, closed=True):
        pts = self.fixed(xs, ys, zs).reshape(-1, 1, 2)
        if fill:
            cv2.fillPoly(self.img, [pts], color, cv2.LINE_AA, _SHIFT)
        else:
            th = max(1, int(round(thickness * self.k)))
            cv2.polylines(self.img, [pts], closed, color, th, cv2.LINE_AA, _SHIFT)

    def line(self, x0, y0, z0, x1, y1, z1, color, thickness=1.0):
        self.poly([x0, x1], [y0, y1], [z0, z1], color, fill=False, thickness=thickness, closed=False)


def _shade(c, f) -> tuple[float, float, float]:
    return (float(min(255, c[0] * f)), float(min(255, c[1] * f)), float(min(255, c[2] * f)))


def _mix(a, b, t) -> tuple[float, float, float]:
    return tuple(float((1 - t) * x + t * y) for x, y in zip(a, b))  # type: ignore[return-value]


def _head_outline(idt: Identity, yaw: float, grow: float = 0.0, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Head outline points (template frame, no projection): upper ellipse, tapered jaw, chin follows yaw."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    s, c = np.sin(t), np.cos(t)
    lower = s > 0
    half_h = np.where(lower, idt.face_ay_bot, idt.face_ay_top) + grow
    taper = np.where(lower, 1 - idt.jaw * s**2, 1 - 0.06 * s**2)
    x = CX + (idt.face_ax + grow) * c * taper + np.where(lower, 9.0 * math.sin(yaw) * s**3, 0.0)
    y = idt.face_cy + half_h * s
    return x, y


def _draw_background(canvas: np.ndarray, nz: Nuisance, p: _Painter) -> None:
    h, w = canvas.shape[:2]
    # smooth 4x4 colour field: cubic to 1/8 of the canvas, then linear (cheap) to full size
    small = cv2.resize(nz.background, (max(4, w // 8), max(4, h // 8)), interpolation=cv2.INTER_CUBIC)
    canvas[:] = cv2.resize(small.clip(0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    if nz.background_edge is not None:
        x, y, ang, r, g, b = nz.background_edge
        dx, dy = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        far = 400.0
        xs = [x - dx * far, x + dx * far, x + dx * far - dy * far, x - dx * far - dy * far]
        ys = [y - dy * far, y + dy * far, y + dy * far + dx * far, y - dy * far + dx * far]
        p.poly(np.array(xs), np.array(ys), 0.0, (r, g, b))  # z = 0 and no yaw effect (cos applies, fine for background)


def _draw_body(idt: Identity, nz: Nuisance, p: _Painter, bottom: float) -> None:
    skin_dark = _shade(idt.skin, 0.78)
    neck_w = idt.face_ax * 0.56
    sx = 6.0 * math.sin(nz.yaw)
    # shoulders / clothing
    p.ellipse(CX + sx, 150.0, 0.0, 78.0, 44.0, nz.clothing, foreshorten=False)
    p.poly(np.array([CX + sx - 78, CX + sx + 78, CX + sx + 78, CX + sx - 78]), np.array([150.0, 150.0, bottom, bottom]), 0.0, nz.clothing)
    # neck with a shadowed V of skin at the collar
    p.poly(
        np.array([CX - neck_w, CX + neck_w, CX + neck_w * 1.05, CX + neck_w * 0.5, CX, CX - neck_w * 0.5, CX - neck_w * 1.05]) + sx * 0.6,
        np.array([idt.face_cy + 25, idt.face_cy + 25, 113.0, 116.0, 124.0, 116.0, 113.0]),
        0.0,
        skin_dark,
    )


def _draw_hair_back(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    col = idt.hair
    vol = idt.hair_volume
    sx = 4.0 * math.sin(nz.yaw)
    if idt.hair_style == "bald":
        return
    top = idt.face_cy - idt.face_ay_top
    if idt.hair_style in ("long", "volume"):
        p.ellipse(CX - sx, idt.face_cy - 6, 0.0, idt.face_ax + vol, idt.face_ay_top + vol * 0.7, col, foreshorten=False)
        drop = 126.0 if idt.hair_style == "long" else idt.face_cy + 18
        xs = np.array([CX - idt.face_ax - vol, CX + idt.face_ax + vol, CX + idt.face_ax + vol * 0.8, CX - idt.face_ax - vol * 0.8]) - sx
        p.poly(xs, np.array([idt.face_cy - 6, idt.face_cy - 6, drop, drop]), 0.0, col)
    else:
        p.ellipse(CX - sx, idt.face_cy - 2, 0.0, idt.face_ax + vol * 0.45, idt.face_ay_top + vol * 0.6 - 2, col, start=180, end=360, foreshorten=False)
    del top


def _draw_ears(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    s = math.sin(nz.yaw)
    col = _shade(idt.skin, 0.93)
    inner = _shade(idt.skin, 0.72)
    for side in (-1, 1):
        # the ear on the side the face turns away from comes into view, the other hides
        vis = 1.0 - 2.2 * side * s
        if vis <= 0.15:
            continue
        ex = CX + side * (idt.face_ax - 1.5 + 2.5 * max(0.0, -side * s))
        w = 4.8 * min(vis, 1.6)
        p.ellipse(ex, idt.ear_y, 0.0, w, idt.ear_h / 2, col, angle=side * 8.0, foreshorten=False)
        p.ellipse(ex + side * 0.8, idt.ear_y, 0.0, w * 0.45, idt.ear_h / 2 * 0.6, inner, angle=side * 8.0, foreshorten=False)


def _hairline_y(idt: Identity, u: np.ndarray) -> np.ndarray:
    """Hairline height across the forehead, ``u`` = (x - cx) / face_ax in [-1, 1]."""
    y = idt.hairline + idt.temple_drop * np.abs(u) ** 3.5
    if idt.hair_style == "fringe":
        y = y + 1.2 * np.sin(u * 9.0 + idt.hair_part * 5)
    elif idt.hair_style == "side_part":
        y = y + 5.0 * idt.hair_part * u - 2.0 * np.abs(u - idt.hair_part) ** 0.5 + 1.0
    return y


def _draw_hair_cap(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    if idt.hair_style == "bald":
        return
    col = idt.hair
    grow = 1.0 + idt.hair_volume * 0.25
    # upper arc of a slightly enlarged head ellipse, left (t = pi) to right (t = 2 pi)
    t = np.linspace(math.pi, 2 * math.pi, 40)
    ax = idt.face_ax + grow
    xs_top = CX + ax * np.cos(t)
    ys_top = idt.face_cy + (idt.face_ay_top + grow) * np.sin(t)
    # hairline back from right to left
    uu = np.linspace(1.0, -1.0, 41)
    xs_line = CX + uu * idt.face_ax * 1.0
    ys_line = np.minimum(_hairline_y(idt, uu), idt.face_cy + (5 if idt.hair_style == "long" else -2))
    xs = np.concatenate([xs_top, xs_line])
    ys = np.concatenate([ys_top, ys_line])
    zs = np.concatenate([np.zeros_like(xs_top), 6.0 * (1 - uu**2)])
    p.poly(xs, ys, zs, col)
    # a few darker and lighter strands for texture
    dark = _shade(col, 0.7)
    light = _shade(col, 1.25) if max(col) < 200 else _shade(col, 0.85)
    for i, frac in enumerate(np.linspace(-0.8, 0.8, 7)):
        x0 = CX + frac * idt.face_ax * 0.9
        y0 = idt.face_cy - (idt.face_ay_top + grow) * math.sqrt(max(0.0, 1 - (frac * 0.9) ** 2)) + 3.0
        y1 = float(_hairline_y(idt, np.array([frac]))[0]) - 1.5
        if y1 <= y0 + 2:
            continue
        p.line(x0 + idt.hair_part * 4, y0, 3.0, x0 + frac * 3, y1, 5.0, dark if i % 2 else light, 0.5)
    del nz


def _draw_eyes(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    skin = idt.skin
    lid = _shade(skin, 0.86)
    lash = (28.0, 22.0, 20.0)
    sclera = (236.0, 232.0, 226.0)
    socket = _shade(skin, 0.9)
    for side in (-1, 1):
        ex, ey = CX + side * idt.eye_dx, idt.eye_y
        z = 12.0
        tilt = -side * idt.eye_tilt  # outer corner up
        p.ellipse(ex, ey - 1.5, z - 2, idt.eye_w * 1.45, idt.eye_h * 2.4, socket, angle=tilt)
        if nz.blink:
            p.ellipse(ex, ey, z, idt.eye_w, idt.eye_h * 0.25, lash, angle=tilt, thickness=0.7, start=0, end=180)
            continue
        open_ = 1.0 - 0.25 * max(nz.smile, 0.0)
        eh = idt.eye_h * open_
        p.ellipse(ex, ey, z, idt.eye_w, eh, sclera, angle=tilt)
        gx = ex + nz.gaze[0] + 2.0 * math.sin(nz.yaw)
        gy = ey + nz.gaze[1]
        p.ellipse(gx, gy, z + 1, idt.iris_r, idt.iris_r, idt.iris)
        p.ellipse(gx, gy, z + 1, idt.iris_r * 0.45, idt.iris_r * 0.45, (12.0, 10.0, 10.0))
        p.ellipse(gx - 0.8, gy - 0.9, z + 2, 0.55, 0.55, (250.0, 250.0, 250.0))
        # lids cover the iris outside the eye opening: band between the eye ellipse and a larger one
        tt = np.linspace(math.pi, 2 * math.pi, 17)
        ct, st = np.cos(tt), np.sin(tt)
        rot = math.radians(tilt)
        for sign, extra in ((1, idt.iris_r + 1.5), (-1, idt.iris_r + 1.0)):
            yy_in = sign * eh * st
            yy_out = sign * (eh + extra) * st
            xx_in = idt.eye_w * ct
            xx_out = idt.eye_w * 1.12 * ct
            xs = np.concatenate([xx_in, xx_out[::-1]])
            ys = np.concatenate([yy_in, yy_out[::-1]])
            rx = ex + xs * math.cos(rot) - ys * math.sin(rot)
            ry = ey + xs * math.sin(rot) + ys * math.cos(rot)
            p.poly(rx, ry, z, lid if sign == 1 else socket)
        p.ellipse(ex, ey, z, idt.eye_w, eh, lash, angle=tilt, thickness=0.9, start=180, end=360)
        p.ellipse(ex, ey, z, idt.eye_w, eh, _shade(skin, 0.72), angle=tilt, thickness=0.45, start=0, end=180)
        p.ellipse(ex, ey - 1.0, z, idt.eye_w * 1.05, eh + 2.6, _shade(skin, 0.78), angle=tilt, thickness=0.45, start=200, end=340)


def _draw_brows(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    for side in (-1, 1):
        s = np.linspace(-1, 1, 13)  # -1 inner end, +1 outer end
        bx = CX + side * (idt.eye_dx + 1.0)
        by = idt.eye_y - idt.brow_gap - 2.2 * nz.brow_raise
        x = bx + side * s * idt.brow_len / 2
        y = by - idt.brow_arch * (1 - (s - 0.2) ** 2) + idt.brow_tilt * s - 0.8 * nz.brow_raise * (1 - s)
        th = idt.brow_thick * (1.0 - 0.4 * (s + 1) / 2)
        xs = np.concatenate([x, x[::-1]])
        ys = np.concatenate([y - th / 2, (y + th / 2)[::-1]])
        p.poly(xs, ys, 14.0, idt.brow_colour)


def _draw_nose(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    skin = idt.skin
    shadow = _shade(skin, 0.86)
    dark = _shade(skin, 0.42)
    ny, nw = idt.nose_y, idt.nose_w
    # bridge: the side facing away from the light direction gets a soft line
    side = 1 if math.cos(nz.light_angle) < 0 else -1
    p.poly(np.array([CX + side * 3.0, CX + side * nw * 0.62]), np.array([idt.eye_y + 1, ny - 3.0]), np.array([17.0, 24.0]), shadow, fill=False, thickness=0.7, closed=False)
    p.ellipse(CX, ny + 1.2, 22.0, nw * 0.95, 3.4, shadow)  # underside shadow
    p.ellipse(CX, ny - 0.8, 28.0, nw * 0.52, 3.2, _shade(skin, 1.06))  # tip highlight
    for s in (-1, 1):
        p.ellipse(CX + s * nw * 0.78, ny - 0.2, 20.0, 2.4, 2.8, _shade(skin, 0.92))  # ala
        p.ellipse(CX + s * nw * 0.42, ny + 1.7, 24.0, idt.nostril, idt.nostril * 0.55, dark, angle=s * 18.0)


def _mouth_curves(idt: Identity, nz: Nuisance) -> tuple[np.ndarray, ...]:
    u = np.linspace(-1, 1, 25)
    x = CX + u * idt.mouth_w
    corner_lift = 2.6 * nz.smile
    centre_drop = 1.0 * max(nz.smile, 0.0)
    y_line = idt.mouth_y - corner_lift * u**2 + centre_drop * (1 - u**2)
    gap = 7.0 * nz.mouth_open * (1 - u**2) ** 0.8
    y_up_in = y_line - 0.35 * gap
    y_lo_in = y_line + 0.65 * gap
    bow = 0.6 * idt.lip_up * np.exp(-((u / 0.14) ** 2))
    y_up_out = y_up_in - idt.lip_up * (1 - u**2) ** 0.6 + bow
    y_lo_out = y_lo_in + idt.lip_lo * (1 - u**2) ** 0.7
    return x, u, y_up_in, y_lo_in, y_up_out, y_lo_out


def _draw_beard(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    if idt.beard == "none":
        return
    col = idt.hair if idt.beard != "stubble" else _mix(idt.skin, idt.hair, 0.35)
    x, u, y_up_in, _, y_up_out, _ = _mouth_curves(idt, nz)
    if idt.beard in ("full", "stubble"):
        ox, oy = _head_outline(idt, nz.yaw, n=96)
        lower = (oy > idt.mouth_y - 14) & (oy > idt.face_cy)
        ox, oy = ox[lower], oy[lower]
        order = np.argsort(-np.arctan2(oy - idt.face_cy, ox - CX))  # right cheek → chin → left cheek
        ox, oy = ox[order][::-1], oy[order][::-1]
        inner_x = np.array([ox[-1], CX - idt.mouth_w - 4, CX - idt.mouth_w * 0.5, CX, CX + idt.mouth_w * 0.5, CX + idt.mouth_w + 4, ox[0]])
        inner_y = np.array([oy[-1], idt.mouth_y - 6, idt.nose_y + 6.5, idt.nose_y + 5.5, idt.nose_y + 6.5, idt.mouth_y - 6, oy[0]])
        xs = np.concatenate([ox, inner_x])  # outline right → left, then over the lip left → right
        ys = np.concatenate([oy, inner_y])
        zs = np.concatenate([np.full(len(ox), 6.0), np.full(len(inner_x), 14.0)])
        p.poly(xs, ys, zs, col)
    if idt.beard in ("moustache", "goatee"):
        xs = np.concatenate([x * 1.0 + (x - CX) * 0.15, x[::-1]])
        ys = np.concatenate([y_up_out - 0.5, (y_up_out - 4.5 + 1.5 * u**2)[::-1]])
        p.poly(xs, ys, 16.0, col)
    if idt.beard == "goatee":
        p.ellipse(CX, idt.mouth_y + 11.0, 14.0, idt.mouth_w * 0.55, 7.0, col)


def _draw_mouth(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    x, u, y_up_in, y_lo_in, y_up_out, y_lo_out = _mouth_curves(idt, nz)
    z = 16.0 - 5.0 * u**2
    lip_hi = _shade(idt.lip, 0.9)
    if nz.mouth_open > 0.05:
        xs = np.concatenate([x, x[::-1]])
        ys = np.concatenate([y_up_in, y_lo_in[::-1]])
        zs = np.concatenate([z, z[::-1]])
        p.poly(xs, ys, zs, (45.0, 22.0, 24.0))
        if nz.mouth_open > 0.25:
            teeth_lo = y_up_in + 0.35 * (y_lo_in - y_up_in)
            inner = np.abs(u) < 0.75
            p.poly(np.concatenate([x[inner], x[inner][::-1]]), np.concatenate([y_up_in[inner], teeth_lo[inner][::-1]]), np.concatenate([z[inner], z[inner][::-1]]), (232.0, 226.0, 214.0))
    p.poly(np.concatenate([x, x[::-1]]), np.concatenate([y_up_out, y_up_in[::-1]]), np.concatenate([z, z[::-1]]), lip_hi)
    p.poly(np.concatenate([x, x[::-1]]), np.concatenate([y_lo_in, y_lo_out[::-1]]), np.concatenate([z, z[::-1]]), idt.lip)
    line = _shade(idt.lip, 0.45)
    if nz.mouth_open <= 0.05:
        p.poly(x, y_up_in, z, line, fill=False, thickness=0.7, closed=False)
    # chin shadow under the lower lip
    p.ellipse(CX, float(y_lo_out.max()) + 3.0, 14.0, idt.mouth_w * 0.45, 1.4, _shade(idt.skin, 0.9))


def _draw_glasses(idt: Identity, nz: Nuisance, p: _Painter, dark_lenses: bool) -> None:
    col = idt.glasses_colour if nz.glasses else (20.0, 20.0, 24.0)
    w, h = idt.eye_w * 1.55, idt.eye_h * 2.6
    for side in (-1, 1):
        ex, ey = CX + side * idt.eye_dx, idt.eye_y + 1.0
        if dark_lenses:
            p.ellipse(ex, ey, 15.0, w, h, (22.0, 24.0, 30.0))
        if idt.glasses_round or dark_lenses:
            p.ellipse(ex, ey, 15.0, w, h, col, thickness=0.9)
        else:
            xs = np.array([ex - w, ex + w, ex + w * 0.92, ex - w * 0.92])
            ys = np.array([ey - h * 0.85, ey - h * 0.85, ey + h, ey + h])
            p.poly(xs, ys, 15.0, col, fill=False, thickness=0.9)
        p.line(ex + side * w, ey - h * 0.5, 14.0, CX + side * (idt.face_ax - 1), idt.ear_y - 3, 0.0, col, 0.8)
    p.line(CX - idt.eye_dx + w, idt.eye_y, 15.0, CX + idt.eye_dx - w, idt.eye_y, 15.0, col, 0.9)


def _draw_occlusion(idt: Identity, nz: Nuisance, p: _Painter) -> None:
    q = nz.occlusion_params
    if nz.occlusion == "bar":
        cx, cy = 25 + 62 * q[0], 35 + 65 * q[1]
        ang = math.radians(-40 + 80 * q[2]) if q[3] < 0.7 else math.radians(90 * q[2])
        length, width = 60 + 60 * q[4], 9 + 12 * q[5]
        dx, dy = math.cos(ang), math.sin(ang)
        xs = np.array([cx - dx * length / 2 - dy * width / 2, cx + dx * length / 2 - dy * width / 2, cx + dx * length / 2 + dy * width / 2, cx - dx * length / 2 + dy * width / 2])
        ys = np.array([cy - dy * length / 2 + dx * width / 2, cy + dy * length / 2 + dx * width / 2, cy + dy * length / 2 - dx * width / 2, cy - dy * length / 2 - dx * width / 2])
        col = (40 + 200 * q[6], 40 + 200 * q[7], 40 + 200 * q[0] * q[1])
        p.poly(xs, ys, 30.0, col)
    elif nz.occlusion == "hand":
        skin = _shade(idt.skin, 0.95 + 0.1 * q[6])
        hx, hy = 30 + 52 * q[0], 78 + 30 * q[1]
        p.ellipse(hx, hy, 30.0, 13.0, 17.0, skin, foreshorten=False)
        base_ang = -90 + 50 * (q[2] - 0.5)
        for i in range(4):
            a = math.radians(base_ang + (i - 1.5) * 15)
            fx, fy = hx + math.cos(a) * 20, hy + math.sin(a) * 20
            p.ellipse(fx, fy, 30.0, 3.6, 11.0, skin, angle=math.degrees(a) + 90, foreshorten=False)
            p.ellipse(fx, fy, 30.0, 3.6, 11.0, _shade(skin, 0.8), angle=math.degrees(a) + 90, thickness=0.4, foreshorten=False)
        p.ellipse(hx + 14 * (1 if q[3] < 0.5 else -1), hy + 4, 30.0, 4.0, 9.0, skin, angle=40 if q[3] < 0.5 else -40, foreshorten=False)
    elif nz.occlusion == "sunglasses":
        _draw_glasses(idt, nz, p, dark_lenses=True)
    elif nz.occlusion == "mask":
        col = (200 + 40 * q[0], 215 + 30 * q[1], 225 + 25 * q[2]) if q[3] < 0.7 else (50 + 60 * q[0], 50 + 60 * q[1], 60 + 60 * q[2])
        top = idt.nose_y - 9
        ox, oy = _head_outline(idt, nz.yaw)
        lower = oy > top
        ox, oy = ox[lower], oy[lower]
        order = np.argsort(np.arctan2(oy - idt.face_cy, ox - CX))
        xs = np.concatenate([ox[order], [CX - idt.face_ax * 0.85, CX, CX + idt.face_ax * 0.85]])
        ys = np.concatenate([oy[order], [top + 2, top - 1, top + 2]])
        # close the polygon from the left cheek over the nose to the right cheek
        p.poly(xs, ys, 20.0, col)
        for k in (0.35, 0.55, 0.75):
            yy = top + k * (idt.face_cy + idt.face_ay_bot - top)
            p.line(CX - idt.face_ax * 0.7, yy, 20.0, CX + idt.face_ax * 0.7, yy, 20.0, _shade(col, 0.85), 0.5)


@lru_cache(maxsize=64)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


@dataclass(frozen=True)
class RenderedFace:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    landmarks: np.ndarray  # (5, 2) float64 pixel coordinates in the image
    unit: float  # output pixels per template unit


def face_landmarks(idt: Identity, nz: Nuisance) -> np.ndarray:
    """The five landmarks of ``idt`` under ``nz`` in the template frame (after yaw and expression)."""
    lm = idt.landmarks().copy()
    depth = np.array([12.0, 12.0, 28.0, 11.0, 11.0])
    lm[3:, 1] -= 2.6 * nz.smile  # mouth corners lift with a smile (u = ±1 in _mouth_curves)
    s, c = math.sin(nz.yaw), math.cos(nz.yaw)
    lm[:, 0] = CX + (lm[:, 0] - CX) * c + depth * s
    return lm


def render_face(idt: Identity, nz: Nuisance, affine: np.ndarray, out_size: tuple[int, int]) -> RenderedFace:
    """Render ``idt`` under ``nz``; ``affine`` maps template coordinates to output pixels (w, h = out_size).

    Returns the RGB image and the five landmarks in output pixels.
    """
    w_out, h_out = int(out_size[0]), int(out_size[1])
    affine = np.asarray(affine, dtype=np.float64)
    unit = math.sqrt(abs(np.linalg.det(affine[:, :2])))
    inv = cv2.invertAffineTransform(affine)
    corners = np.array([[0, 0, 1], [w_out, 0, 1], [0, h_out, 1], [w_out, h_out, 1]], dtype=np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(axis=0)) - 3
    x1, y1 = np.ceil(corners.max(axis=0)) + 3
    k = _SS * unit  # canvas pixels per template unit
    cw, ch = int(math.ceil((x1 - x0) * k)), int(math.ceil((y1 - y0) * k))
    canvas = np.empty((ch, cw, 3), dtype=np.uint8)
    mask = np.zeros((ch, cw), dtype=np.uint8)
    p = _Painter(canvas, k, (x0, y0), nz.yaw)

    _draw_background(canvas, nz, p)
    _draw_hair_back(idt, nz, p)
    _draw_body(idt, nz, p, bottom=y1 + 5)
    _draw_ears(idt, nz, p)
    hx, hy = _head_outline(idt, nz.yaw)
    p.poly(hx, hy, 0.0, idt.skin)
    mp = _Painter(mask, k, (x0, y0), nz.yaw)
    mp.poly(hx, hy, 0.0, 255)
    _draw_beard(idt, nz, p)
    _draw_hair_cap(idt, nz, p)
    for mx, my, mr in idt.moles:
        p.ellipse(mx, my, 10.0, mr, mr, _shade(idt.skin, 0.45))
    _draw_eyes(idt, nz, p)
    _draw_brows(idt, nz, p)
    _draw_nose(idt, nz, p)
    _draw_mouth(idt, nz, p)
    if nz.glasses and nz.occlusion != "sunglasses":
        _draw_glasses(idt, nz, p, dark_lenses=False)
    if nz.occlusion:
        _draw_occlusion(idt, nz, p)

    # canvas pixel c = k (t - origin) + half; output pixel (2x) = SS (A t + b) + half
    half = (_SS - 1) / 2.0
    lin = affine[:, :2] * _SS / k
    trans = _SS * (affine[:, :2] @ np.array([x0, y0]) + affine[:, 2]) + half - lin @ np.array([half, half])
    m2 = np.hstack([lin, trans[:, None]])
    big = cv2.warpAffine(canvas, m2, (w_out * _SS, h_out * _SS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = cv2.resize(big, (w_out, h_out), interpolation=cv2.INTER_AREA).astype(np.float32)
    # the head mask only steers shading: warp it straight to the output resolution
    m1 = np.hstack([lin / _SS, ((trans - half) / _SS)[:, None]])
    fmask = cv2.warpAffine(mask, m1, (w_out, h_out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT).astype(np.float32)
    fmask *= np.float32(1.0 / 255.0)

    # per-pixel template coordinates (for shading and texture)
    gx, gy = _grid(h_out, w_out)
    inv32 = inv.astype(np.float32)
    tx = inv32[0, 0] * gx + inv32[0, 1] * gy + inv32[0, 2]
    ty = inv32[1, 0] * gx + inv32[1, 1] * gy + inv32[1, 2]
    s, c = math.sin(nz.yaw), math.cos(nz.yaw)
    ux = (CX + (tx - CX - 14.0 * s) / max(c, 0.3)).astype(np.float32)  # undo yaw for the skin texture (depth 14)
    scale_t = (TEXTURE_N - 1) / 112.0
    tex = cv2.remap(idt.texture, ux * np.float32(scale_t), ty * np.float32(scale_t), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    nx = (tx - (CX + 6.0 * s)) / idt.face_ax
    ny = (ty - idt.face_cy) / np.where(ty > idt.face_cy, idt.face_ay_bot, idt.face_ay_top)
    r2 = np.clip(nx * nx + ny * ny, 0.0, 1.0)
    edge = 1.0 - 0.26 * r2 * r2 * fmask
    la = nz.light_angle
    d = (math.cos(la) * nx + math.sin(la) * ny).clip(-1.5, 1.5)
    light = 1.0 + nz.light * d * (0.35 + 0.65 * fmask)
    gain = (nz.ambient * edge * light * (1.0 + idt.texture_amp * tex * fmask)).astype(np.float32)
    img *= gain[..., None]
    img *= np.asarray(nz.cast, dtype=np.float32)
    out = np.clip(img, 0, 255).round().astype(np.uint8)

    lm_t = face_landmarks(idt, nz)
    lm = lm_t @ affine[:, :2].T + affine[:, 2]
    return RenderedFace(image=out, landmarks=lm, unit=unit)
