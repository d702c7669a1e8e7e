"""Step-level model of the layer engine: the schedule run on the engine's own memories.

It executes :func:`~defslice.hw.layer.schedule.slice_schedule` step by step on the
memory image of :mod:`defslice.model.layer_layout` (parameter sections unpacked into the
on-chip memories, each window into its four parity banks), with the array's two modes,
the requantizer and the units beside the array. Its ``y`` must equal
:func:`defslice.model.dat_layer_fixed.dat_layer_fixed_forward`: that checks the data
organisation the RTL implements (tiles, banks, quads, tap masks, key tiles, the order of
the phases) before and apart from the RTL.
"""

from __future__ import annotations

import numpy as np

from defslice.config import LayerNumericsConfig, NumericsConfig
from defslice.hw.layer.plan import LayerPlan
from defslice.hw.layer.schedule import Step, offset_rows, slice_schedule
from defslice.model.dat_layer_fixed import FixedLayerParams
from defslice.model.fixedpoint import (
    bilinear_weights,
    exp2_fixed,
    gelu_fixed,
    reciprocal,
    requantize,
    round_half_up_shift,
    rsqrt_normalize,
    saturate,
    split_coord,
    tanh_fixed,
)
from defslice.model.layer_layout import (
    BIAS_ORDER,
    DESC_FIELDS,
    OPEN_HI,
    OPEN_LO,
    WEIGHT_BYTES,
    SliceTask,
)

__all__ = ["EngineModel"]

ROWS = 4
PROJ = ("proj_q", "proj_k", "proj_v", "proj_out")


class EngineModel:
    """The engine on one memory image.

    Arguments
    ---------
    plan : LayerPlan
    numerics, layer : NumericsConfig, LayerNumericsConfig
    qp : FixedLayerParams
        For the tables, ``eps`` and the offset scale (constants of the generated design);
        the weights, biases, references and bias table are read from the image.
    image : dict of base -> bytes
        :meth:`LayerLayout.memory_image`.
    """

    def __init__(self, plan: LayerPlan, numerics: NumericsConfig, layer: LayerNumericsConfig,
                 qp: FixedLayerParams, image: dict[int, bytes]) -> None:
        self.plan, self.num, self.ln, self.qp = plan, numerics, layer, qp
        self.lay = plan.layout
        self.image = image
        self._load_params()
        d = plan.dims
        self.y = np.zeros((d.channels, d.height, d.width), dtype=np.int64)

    # -- parameters ------------------------------------------------------------------------
    def _section(self, name: str, nbytes: int) -> np.ndarray:
        sec = self.lay.sections[name]
        raw = self.image[self.lay.param_base][sec.offset:sec.offset + sec.nbytes]
        return np.frombuffer(raw, f"<i{nbytes}").astype(np.int64)

    def _load_params(self) -> None:
        d, L, N = self.plan.dims, self.plan.lanes, self.plan.cols
        c, cg = d.channels, d.group_channels
        tiles = (c // N) * (c // L)
        self.wmem = {name: self._section(name, WEIGHT_BYTES)[: tiles * L * N].reshape(
            tiles, L, N) for name in PROJ}
        self.wmem["offset_proj"] = self._section("offset_proj", WEIGHT_BYTES)[
            : (cg // L) * L * N].reshape(cg // L, L, N)
        self.dwmem = self._section("dwconv", WEIGHT_BYTES)[
            : d.tap_quads * (cg // L) * ROWS * L].reshape(-1, ROWS, L)
        sizes = [c] * 4 + [cg] * 2
        bias = self._section("bias", 8)
        starts = np.cumsum([0, *sizes])
        self.bias = {n: bias[starts[k]:starts[k + 1]] for k, n in enumerate(BIAS_ORDER)}
        self.gamma = self._section("norm_gain", WEIGHT_BYTES)[:cg]
        ref = self._section("reference", 4)
        self.ref_y, self.ref_x = ref[: d.key_rows], ref[d.key_rows:d.key_rows + d.key_cols]
        if d.use_pe:
            per = self.lay.bus_bytes // (ROWS * WEIGHT_BYTES)
            size = d.heads * d.height * d.width
            words = self._section("rpe", WEIGHT_BYTES).reshape(-1, ROWS, per)
            self.rpe = words.transpose(1, 0, 2).reshape(ROWS, -1)[:, :size]

    # -- per slice -------------------------------------------------------------------------
    def _descriptor(self, k: int) -> dict[str, int]:
        lay = self.lay
        raw = self.image[lay.desc_base][k * lay.desc_stride:][: 2 * len(DESC_FIELDS)]
        return dict(zip(DESC_FIELDS, np.frombuffer(raw, "<i2").tolist(), strict=True))

    def _load_window(self, desc: dict[str, int]) -> None:
        """Window pixels into four parity banks, as the loader writes them."""
        d = self.plan.dims
        c = d.channels
        x = np.frombuffer(self.image[self.lay.x_base], np.uint8).reshape(
            d.height * d.width, self.lay.pixel_stride)[:, : c * 2].copy().view("<i2")
        x = x.astype(np.int64).reshape(d.height, d.width, c)
        self.win = desc
        self.xwin = x[desc["row0"]:desc["row0"] + desc["rows"],
                      desc["col0"]:desc["col0"] + desc["cols"]]
        self.q = np.zeros_like(self.xwin)

    def _in_window(self, r: int, c: int) -> bool:
        w = self.win
        return w["row0"] <= r < w["row0"] + w["rows"] and w["col0"] <= c < w["col0"] + w["cols"]

    def _bank_word(self, buf: np.ndarray, r: int, c: int, word: int) -> np.ndarray:
        """Word ``word`` (``L`` channels) of map pixel ``(r, c)`` from a window buffer,
        zeros outside the window (a masked bank read)."""
        L = self.plan.lanes
        if not self._in_window(r, c):
            return np.zeros(L, dtype=np.int64)
        return buf[r - self.win["row0"], c - self.win["col0"], word * L:(word + 1) * L]

    def run(self) -> np.ndarray:
        """Every slice; returns ``y`` (C, H, W)."""
        for k, t in enumerate(self.plan.tasks):
            desc = self._descriptor(k)
            if t.num_keys == 0:
                self._bias_only(t)
                continue
            self._load_window(desc)
            self._slice(t)
        return self.y

    def _bias_only(self, t: SliceTask) -> None:
        y = requantize(self.bias["proj_out"], self.ln.o_frac + self.ln.proj_out_frac
                       - self.num.out_frac, self.num.out_bits)
        r = t.region
        self.y[:, r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols] = y[:, None, None]

    def _slice(self, t: SliceTask) -> None:
        d = self.plan.dims
        self.task = t
        self.rows = offset_rows(self.plan, t)
        nk = t.num_keys
        self.h = np.zeros((len(self.rows), d.group_channels), dtype=np.int64)
        self.g = np.zeros_like(self.h)
        self.pos_sample = np.zeros((len(self.rows), 2), dtype=np.int64)
        self.pos_bias = np.zeros_like(self.pos_sample)
        self.keys = np.zeros((nk + ROWS, d.channels), dtype=np.int64)
        self.k = np.zeros((nk + ROWS + self.plan.lanes, d.channels), dtype=np.int64)
        self.v = np.zeros_like(self.k)
        self.logits, self.prob, self.o = {}, {}, {}
        acc = None
        for step in slice_schedule(self.plan, t):
            a, b, mode = self._operands(step)
            term = a @ b if mode == "dense" else (a * b).sum(axis=0)
            acc = term if step.first else acc + term
            if step.last:
                self._result(step, acc)

    # -- operands --------------------------------------------------------------------------
    def _operands(self, s: Step) -> tuple[np.ndarray, np.ndarray, str]:
        return getattr(self, f"_op_{s.phase}")(s)

    def _quad(self, r0: int, c0: int, box: tuple[int, int, int, int]) -> list:
        """Pixels of the quad at ``(r0, c0)``, ``None`` where outside ``box``."""
        br, bc, nr, nc = box
        out = []
        for r in range(ROWS):
            y, x = r0 + r // 2, c0 + r % 2
            out.append((y, x) if br <= y < br + nr and bc <= x < bc + nc else None)
        return out

    def _a_pixels(self, buf: np.ndarray, pixels: list, word: int) -> np.ndarray:
        L = self.plan.lanes
        return np.stack([self._bank_word(buf, *p, word) if p else np.zeros(L, np.int64)
                         for p in pixels])

    def _op_q(self, s: Step) -> tuple:
        qr, qc, ot, w = s.index
        pixels = self._quad(qr, qc, self.task.qbox.as_tuple())
        c = self.plan.dims.channels
        return (self._a_pixels(self.xwin, pixels, w),
                self.wmem["proj_q"][ot * (c // self.plan.lanes) + w], "dense")

    def _tap_pixels(self, row: int, tq: int) -> list:
        d = self.plan.dims
        ki, kj, _ = self.rows[row]
        qy, qx = divmod(tq, (d.kernel + 1) // 2)
        r0 = ki * d.stride - d.spec.padding
        c0 = kj * d.stride - d.spec.padding
        out = []
        for r in range(ROWS):
            ty, tx = 2 * qy + r // 2, 2 * qx + r % 2
            p = (r0 + ty, c0 + tx)
            ok = ty < d.kernel and tx < d.kernel and self._in_window(*p)
            out.append(p if ok else None)
        return out

    def _op_dwconv(self, s: Step) -> tuple:
        row, cw, tq = s.index
        d, L = self.plan.dims, self.plan.lanes
        g = self.rows[row][2]
        word = g * (d.group_channels // L) + cw
        a = self._a_pixels(self.q, self._tap_pixels(row, tq), word)
        return a, self.dwmem[tq * (d.group_channels // L) + cw], "reduce"

    def _op_offset_proj(self, s: Step) -> tuple:
        row, cw = s.index
        L = self.plan.lanes
        a = np.zeros((ROWS, L), dtype=np.int64)
        a[0] = self.g[row, cw * L:(cw + 1) * L]
        return a, self.wmem["offset_proj"][cw], "dense"

    def _op_sample(self, s: Step) -> tuple:
        row, cw = s.index
        d, L, f = self.plan.dims, self.plan.lanes, self.num.coord_frac
        g = self.rows[row][2]
        (y0, fy), (x0, fx) = (split_coord(v, f) for v in self.pos_sample[row])
        w = bilinear_weights(fy, fx, f)
        word = g * (d.group_channels // L) + cw
        corners = [(int(y0) + r // 2, int(x0) + r % 2) for r in range(ROWS)]
        a = np.stack([self._bank_word(self.xwin, *p, word) for p in corners])
        return a, np.repeat(np.asarray(w)[:, None], L, axis=1), "reduce"

    def _op_kv(self, s: Step) -> tuple:
        which, kq, ot, w = s.index
        L, c = self.plan.lanes, self.plan.dims.channels
        a = self.keys[ROWS * kq:ROWS * kq + ROWS, w * L:(w + 1) * L]
        name = ("proj_k", "proj_v")[which]
        return a, self.wmem[name][ot * (c // L) + w], "dense"

    def _query_quad(self, n: int) -> list:
        r = self.task.region
        qr, qc = divmod(n, -(-r.cols // 2))
        return self._quad(r.row0 + 2 * qr, r.col0 + 2 * qc, r.as_tuple())

    def _op_logits(self, s: Step) -> tuple:
        n, h, kt, w = s.index
        d, L, N = self.plan.dims, self.plan.lanes, self.plan.cols
        word = h * (d.head_dim // L) + w
        a = self._a_pixels(self.q, self._query_quad(n), word)
        ch = h * d.head_dim + w * L
        b = self.k[kt * N:(kt + 1) * N, ch:ch + L].T
        return a, b, "dense"

    def _op_pv(self, s: Step) -> tuple:
        n, h, ct, kc = s.index
        d, L, N = self.plan.dims, self.plan.lanes, self.plan.cols
        if (n, h) not in self.prob:
            self._softmax(n)
        p = self.prob[(n, h)]                                    # (4, nk)
        a = np.zeros((ROWS, L), dtype=np.int64)
        part = p[:, kc * L:(kc + 1) * L]
        a[:, :part.shape[1]] = part
        ch = h * d.head_dim + ct * N
        return a, self.v[kc * L:(kc + 1) * L, ch:ch + N], "dense"

    def _op_proj_out(self, s: Step) -> tuple:
        n, ot, w = s.index
        L, c = self.plan.lanes, self.plan.dims.channels
        return self.o[n][:, w * L:(w + 1) * L], self.wmem["proj_out"][ot * (c // L) + w], \
            "dense"

    # -- results ---------------------------------------------------------------------------
    def _result(self, s: Step, acc: np.ndarray) -> None:
        getattr(self, f"_res_{s.phase}")(s, acc)

    def _res_q(self, s: Step, acc: np.ndarray) -> None:
        qr, qc, ot, _ = s.index
        ln, N = self.ln, self.plan.cols
        vals = requantize(acc + self.bias["proj_q"][ot * N:(ot + 1) * N],
                          self.num.value_frac + ln.proj_q_frac - ln.q_frac, ln.act_bits)
        for r, p in enumerate(self._quad(qr, qc, self.task.qbox.as_tuple())):
            if p:
                y, x = p[0] - self.win["row0"], p[1] - self.win["col0"]
                self.q[y, x, ot * N:(ot + 1) * N] = vals[r]

    def _res_dwconv(self, s: Step, acc: np.ndarray) -> None:
        row, cw, _ = s.index
        ln, L = self.ln, self.plan.lanes
        self.h[row, cw * L:(cw + 1) * L] = requantize(
            acc + self.bias["conv"][cw * L:(cw + 1) * L],
            ln.q_frac + ln.offset_conv_frac - ln.h_frac, ln.act_bits)
        if cw == self.h.shape[1] // L - 1:
            self.g[row] = self._layernorm(self.h[row])

    def _layernorm(self, h: np.ndarray) -> np.ndarray:
        """The LayerNorm unit (steps 3a-4)."""
        ln, cg = self.ln, h.size
        mean = (2 * int(h.sum()) + cg) // (2 * cg)
        dd = h - mean
        var = int((dd * dd).sum()) // cg
        i, e = rsqrt_normalize(np.array([max(var + self.qp.eps, 1)]), ln.rsqrt_index_bits)
        rsq = self.qp.tables.rsqrt[int(i[0]) - (1 << (ln.rsqrt_index_bits - 2))]
        z = requantize(dd * rsq, ln.rsqrt_frac + int(e[0]) // 2 - ln.z_frac, ln.act_bits)
        n = requantize(z * self.gamma + self.bias["norm"],
                       ln.z_frac + ln.norm_frac - ln.n_frac, ln.act_bits)
        return gelu_fixed(n, self.qp.tables.gelu)

    def _res_offset_proj(self, s: Step, acc: np.ndarray) -> None:
        """The offset unit (steps 5-6) on the two raw offsets."""
        row = s.index[0]
        ln, num = self.ln, self.num
        f, cb = num.coord_frac, num.coord_bits
        ki, kj, _ = self.rows[row]
        ref = np.array([self.ref_y[ki], self.ref_x[kj]])
        raw = acc[0, :2]
        d = self.plan.dims
        if d.spec.offset_range_factor < 0:
            off = requantize(raw, ln.n_frac + ln.offset_proj_frac - f, cb)
            top = (np.array([d.height, d.width]) - 1) << f
            pos = np.clip(ref + off, 0, top)
        else:
            t = requantize(raw, ln.n_frac + ln.offset_proj_frac - ln.t_frac, ln.act_bits)
            th = tanh_fixed(t, self.qp.tables.tanh, ln.tanh_frac)
            off = requantize(th * self.qp.offset_scale,
                             ln.tanh_frac + ln.offset_scale_frac - f, cb)
            pos = saturate(ref + off, cb)
        w = self.win
        win = np.array([[w["y_lo"], w["y_hi"]], [w["x_lo"], w["x_hi"]]])
        bias = np.array([[w["by_lo"], w["by_hi"]], [w["bx_lo"], w["bx_hi"]]])
        self.pos_sample[row] = np.clip(pos, win[:, 0] << f, win[:, 1] << f)
        lo = np.where(bias[:, 0] == OPEN_LO, pos, np.maximum(pos, bias[:, 0] << f))
        self.pos_bias[row] = np.where(bias[:, 1] == OPEN_HI, lo,
                                      np.minimum(lo, bias[:, 1] << f))

    def _res_sample(self, s: Step, acc: np.ndarray) -> None:
        row, cw = s.index
        d, L = self.plan.dims, self.plan.lanes
        ki, kj, g = self.rows[row]
        key = (ki - self.task.keys.row0) * self.task.keys.cols + (kj - self.task.keys.col0)
        ch = g * d.group_channels + cw * L
        self.keys[key, ch:ch + L] = round_half_up_shift(acc, 2 * self.num.coord_frac)

    def _res_kv(self, s: Step, acc: np.ndarray) -> None:
        which, kq, ot, _ = s.index
        ln, N, vf = self.ln, self.plan.cols, self.num.value_frac
        name, dest = (("proj_k", self.k), ("proj_v", self.v))[which]
        frac = (vf + ln.proj_k_frac - ln.k_frac, vf + ln.proj_v_frac - ln.v_frac)[which]
        vals = requantize(acc + self.bias[name][ot * N:(ot + 1) * N], frac, ln.act_bits)
        dest[ROWS * kq:ROWS * kq + ROWS, ot * N:(ot + 1) * N] = vals

    def _res_logits(self, s: Step, acc: np.ndarray) -> None:
        n, h, kt, _ = s.index
        N, ln = self.plan.cols, self.ln
        qk = round_half_up_shift(acc, ln.q_frac + ln.k_frac - ln.logit_frac)
        buf = self.logits.setdefault((n, h), np.zeros((ROWS, self.task.num_keys + N),
                                                      dtype=np.int64))
        buf[:, kt * N:(kt + 1) * N] = qk

    def _bias(self, pixel: tuple[int, int], h: int, key: int) -> int:
        """The bias lookup (step 9b) from the four parity banks."""
        d, f, ln = self.plan.dims, self.num.coord_frac, self.ln
        if not d.use_pe:
            return 0
        row = key * d.groups + h * d.groups // d.heads
        (y0, fy), (x0, fx) = (split_coord(v, f) for v in self.pos_bias[row])
        w = bilinear_weights(fy, fx, f)
        total = 0
        for c, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            ty, tx = pixel[0] - (int(y0) + dy) + d.height - 1, pixel[1] - (int(x0) + dx) \
                + d.width - 1
            if 0 <= ty <= 2 * d.height - 2 and 0 <= tx <= 2 * d.width - 2:
                bank = 2 * (ty & 1) + (tx & 1)
                entry = (h * d.height + (ty >> 1)) * d.width + (tx >> 1)
                total += int(self.rpe[bank, entry]) * int(w[c])
        return int(round_half_up_shift(total, 2 * f + ln.rpe_frac - ln.logit_frac))

    def _softmax(self, n: int) -> None:
        """The softmax unit (steps 9c-10f) on quad ``n``'s rows."""
        ln, tb, nk = self.ln, self.qp.tables, self.task.num_keys
        pixels = self._query_quad(n)
        for h in range(self.plan.dims.heads):
            p = np.zeros((ROWS, nk), dtype=np.int64)
            for r, px in enumerate(pixels):
                if px is None:
                    continue
                qk = self.logits[(n, h)][r, :nk]
                bias = np.array([self._bias(px, h, k) for k in range(nk)])
                logit = saturate(qk + bias, ln.logit_bits)
                u = round_half_up_shift((logit - logit.max()) * tb.log2e,
                                        ln.logit_frac + ln.log2e_frac - ln.exp_index_bits)
                e = exp2_fixed(u, tb.exp2, ln.exp_index_bits, ln.exp_frac)
                rcp = reciprocal(np.array([e.sum()]), ln.exp_frac + ln.recip_frac)[0]
                p[r] = round_half_up_shift(e * rcp, ln.exp_frac + ln.recip_frac - ln.prob_frac)
            self.prob[(n, h)] = p

    def _res_pv(self, s: Step, acc: np.ndarray) -> None:
        n, h, ct, _ = s.index
        d, N, ln = self.plan.dims, self.plan.cols, self.ln
        o = self.o.setdefault(n, np.zeros((ROWS, d.channels), dtype=np.int64))
        ch = h * d.head_dim + ct * N
        o[:, ch:ch + N] = requantize(acc, ln.prob_frac + ln.v_frac - ln.o_frac, ln.act_bits)

    def _res_proj_out(self, s: Step, acc: np.ndarray) -> None:
        n, ot, _ = s.index
        N, ln, num = self.plan.cols, self.ln, self.num
        vals = requantize(acc + self.bias["proj_out"][ot * N:(ot + 1) * N],
                          ln.o_frac + ln.proj_out_frac - num.out_frac, num.out_bits)
        for r, p in enumerate(self._query_quad(n)):
            if p:
                self.y[ot * N:(ot + 1) * N, p[0], p[1]] = vals[r]

