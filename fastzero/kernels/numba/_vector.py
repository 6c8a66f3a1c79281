"""Register-blocked micro-kernels that hand LLVM whole SIMD vectors.

numba's loops over scalars rarely become packed AVX-512 FMAs in a
convolution's inner loop. These building blocks are written with
``numba.extending.intrinsic``: their code generator emits LLVM IR on
``<L x float>`` / ``<L x double>`` vectors and ``llvm.fma`` directly, with
``L`` lanes filling 64 bytes (16 float32 or 8 float64, one zmm register).
On a CPU without AVX-512 LLVM splits each vector into two (AVX2) or four
(SSE) registers, with the same arithmetic in the same order, but the
tiles' accumulators no longer fit in registers and the tiles run several
times slower than BLAS; without FMA instructions (``NUMBA_CPU_NAME=generic``)
``llvm.fma`` becomes a library call per element, slower still.
:func:`vector_target` tells callers to take their BLAS path then.

Both tiles work on *flat* arrays along a "pixel" axis ``q``, where a
channel's image (or a block of images) lies contiguously, one padded row
after another. A filter tap ``k`` is then a fixed shift of that axis,
``offs[k]`` (plane of its channel + row shift + column shift), so a
convolution is, for every output position ``q``,

    out[f, q] = sum_k w[f, k] * a[q + offs[k]]

with no patch matrix in memory (im2col fused into the loads).

:func:`conv_tile` computes ``RF`` filters by ``V`` vectors of ``L`` pixels
as ``RF*V`` accumulators that stay in registers for the whole loop over
taps: per tap, ``V`` unaligned vector loads of ``a``, ``RF`` broadcasts of
a weight and ``RF*V`` FMAs. :func:`dot_tile` is the transposed product,
the weight gradient ``dw[f, k] = sum_q d[f, q] * a[q + offs[k]]``: ``RF``
rows of ``d`` by ``RK`` taps as ``RF*RK`` vector accumulators over the
``q`` loop (per step ``RF + RK`` loads, ``RF*RK`` FMAs), each summed
across its lanes once at the end. The channel tiles
(:func:`_channel_conv_tile`, :func:`_channel_dot_tile`) are the same two
products with the vectors along output channels instead of pixels, for
products with few pixels and many channels. All fix the order of every sum:
results are the same bits on every run.

numba caches a kernel keyed on its own source file: the kernels that call
these tiles do not notice an edit of this module alone (clear the cache,
``__pycache__/*.nbi``, after changing the tiles or their constants).
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

#: Filters by vectors of pixels per :func:`conv_tile` (accumulators: RF*V).
CONV_RF, CONV_V = 4, 6
#: Filters by taps per :func:`dot_tile` (accumulators: RF*RK).
DOT_RF, DOT_RK = 4, 6


@functools.lru_cache(maxsize=None)
def vector_target() -> bool:
    """Whether numba compiles for a CPU with AVX-512F (the host's, or ``NUMBA_CPU_FEATURES``).

    With only ``NUMBA_CPU_NAME`` set numba passes no feature list: False.
    Under ``NUMBA_DISABLE_JIT=1`` too: the vector intrinsics only exist compiled.
    """
    if numba.config.DISABLE_JIT:
        return False
    features = numba.config.CPU_FEATURES
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


def lanes(itemsize: int) -> int:
    """Elements of that size in one 64-byte vector."""
    return 64 // itemsize


def _setup(context, builder, sig, args, n_arrays):
    """Data pointers of the first ``n_arrays`` arguments, the element and vector types."""
    ptrs = [context.make_array(sig.args[i])(context, builder, args[i]).data for i in range(n_arrays)]
    elem = context.get_value_type(sig.args[0].dtype)
    n = lanes(sig.args[0].dtype.bitwidth // 8)
    vec = ir.VectorType(elem, n)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{n}{'f32' if n == 16 else 'f64'}"
    )
    return ptrs, vec, n, fma, sig.args[0].dtype.bitwidth // 8


def _vload(builder, ptr, index, vec, align):
    return builder.load(builder.bitcast(builder.gep(ptr, [index]), vec.as_pointer()), align=align)


def _broadcast(builder, value, vec):
    i32 = ir.IntType(32)
    undef = ir.Constant(vec, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(i32, vec.count), [0] * vec.count))


@intrinsic
def conv_tile(typingctx, a, a0, offs, w, w0, ldk, out, o0, ldo):
    """``out[o0 + r*ldo + p] = sum_k w[w0 + k*ldk + r] * a[a0 + offs[k] + p]``.

    For ``r < CONV_RF`` filters and ``p < CONV_V * L`` pixels; ``k`` runs
    over ``offs`` (int64) in order. ``a``, ``w``, ``out`` are flat, of one
    float dtype; every index read or written must be in bounds.
    """
    sig = types.void(a, a0, offs, w, w0, ldk, out, o0, ldo)

    def codegen(context, builder, signature, args):
        (ap, offp, wp, outp), vec, n, fma, align = _setup(
            context, builder, _reorder(signature, (0, 2, 3, 6)), _pick(args, (0, 2, 3, 6)), 4
        )
        a0v, w0v, ldkv, o0v, ldov = args[1], args[4], args[5], args[7], args[8]
        intp = context.get_value_type(types.intp)
        nk = context.make_array(signature.args[2])(context, builder, args[2]).nitems
        zero = ir.Constant(vec, [ir.Constant(vec.element, 0.0)] * n)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(CONV_V)] for _ in range(CONV_RF)]
        with cgutils.for_range(builder, nk) as loop:
            k = loop.index
            base = builder.add(a0v, builder.load(builder.gep(offp, [k])))
            xs = [_vload(builder, ap, builder.add(base, ir.Constant(intp, v * n)), vec, align) for v in range(CONV_V)]
            wk = builder.add(w0v, builder.mul(k, ldkv))
            for r in range(CONV_RF):
                ws = _broadcast(builder, builder.load(builder.gep(wp, [builder.add(wk, ir.Constant(intp, r))])), vec)
                for v in range(CONV_V):
                    builder.store(builder.call(fma, [ws, xs[v], builder.load(acc[r][v])]), acc[r][v])
        for r in range(CONV_RF):
            row = builder.add(o0v, builder.mul(ldov, ir.Constant(intp, r)))
            for v in range(CONV_V):
                dst = builder.gep(outp, [builder.add(row, ir.Constant(intp, v * n))])
                builder.store(builder.load(acc[r][v]), builder.bitcast(dst, vec.as_pointer()), align=align)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def dot_tile(typingctx, d, d0, ldd, a, a0, offs, k0, nvec, dw, dw0, lddw):
    """``dw[dw0 + r*lddw + t] += sum_p d[d0 + r*ldd + p] * a[a0 + offs[k0 + t] + p]``.

    For ``r < DOT_RF`` rows of ``d``, ``t < DOT_RK`` taps and
    ``p < nvec * L``: lane ``l`` sums the pixels ``l, l + L, ...`` in
    order, then the lanes are summed by :func:`_lane_sum`.
    """
    sig = types.void(d, d0, ldd, a, a0, offs, k0, nvec, dw, dw0, lddw)

    def codegen(context, builder, signature, args):
        (dp, ap, offp, dwp), vec, n, fma, align = _setup(
            context, builder, _reorder(signature, (0, 3, 5, 8)), _pick(args, (0, 3, 5, 8)), 4
        )
        d0v, lddv, a0v, k0v, nvv, dw0v, lddwv = (args[i] for i in (1, 2, 4, 6, 7, 9, 10))
        intp = context.get_value_type(types.intp)
        zero = ir.Constant(vec, [ir.Constant(vec.element, 0.0)] * n)
        acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(DOT_RK)] for _ in range(DOT_RF)]
        drow = [builder.add(d0v, builder.mul(lddv, ir.Constant(intp, r))) for r in range(DOT_RF)]
        abase = [
            builder.add(a0v, builder.load(builder.gep(offp, [builder.add(k0v, ir.Constant(intp, t))])))
            for t in range(DOT_RK)
        ]
        with cgutils.for_range(builder, nvv) as loop:
            p = builder.mul(loop.index, ir.Constant(intp, n))
            ds = [_vload(builder, dp, builder.add(drow[r], p), vec, align) for r in range(DOT_RF)]
            for t in range(DOT_RK):
                x = _vload(builder, ap, builder.add(abase[t], p), vec, align)
                for r in range(DOT_RF):
                    builder.store(builder.call(fma, [ds[r], x, builder.load(acc[r][t])]), acc[r][t])
        for r in range(DOT_RF):
            row = builder.add(dw0v, builder.mul(lddwv, ir.Constant(intp, r)))
            for t in range(DOT_RK):
                dst = builder.gep(dwp, [builder.add(row, ir.Constant(intp, t))])
                builder.store(builder.fadd(builder.load(dst), _lane_sum(builder, builder.load(acc[r][t]))), dst)
        return context.get_dummy_value()

    return sig, codegen


def _channel_conv_tile(rp: int, nv: int):
    """A :func:`conv_tile` transposed: ``rp`` pixels by ``nv`` vectors of ``L`` channels.

    ``out[opix[p0 + p] + (c0 + c)*ldc] = bias[c0 + c] + sum_k a[pix[p0 + p] + offs[k]] * w[k*ldw + c0 + c]``
    for ``p < rp``, ``c < nv*L``: per tap ``nv`` vector loads of ``w``,
    ``rp`` broadcasts of ``a``, ``rp*nv`` FMAs into accumulators that stay
    in registers. The pixels are any positions (two lists: where they read,
    where they write), so only wanted outputs are computed, and each lands
    straight in its channel plane (stride ``ldc``) of the caller's output.
    """

    @intrinsic
    def tile(typingctx, a, pix, opix, p0, offs, w, c0, ldw, bias, out, ldc):
        sig = types.void(a, pix, opix, p0, offs, w, c0, ldw, bias, out, ldc)

        def codegen(context, builder, signature, args):
            (ap, pixp, opixp, offp, wp, bp, outp), vec, n, fma, align = _setup(
                context, builder, _reorder(signature, (0, 1, 2, 4, 5, 8, 9)), _pick(args, (0, 1, 2, 4, 5, 8, 9)), 7
            )
            p0v, c0v, ldwv, ldcv = args[3], args[6], args[7], args[10]
            intp = context.get_value_type(types.intp)
            i32 = ir.IntType(32)
            nk = context.make_array(signature.args[4])(context, builder, args[4]).nitems
            zero = ir.Constant(vec, [ir.Constant(vec.element, 0.0)] * n)
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(rp)]
            bases = [builder.load(builder.gep(pixp, [builder.add(p0v, ir.Constant(intp, p))])) for p in range(rp)]
            with cgutils.for_range(builder, nk) as loop:
                k = loop.index
                off = builder.load(builder.gep(offp, [k]))
                wk = builder.add(c0v, builder.mul(k, ldwv))
                ws = [_vload(builder, wp, builder.add(wk, ir.Constant(intp, v * n)), vec, align) for v in range(nv)]
                for p in range(rp):
                    xs = _broadcast(builder, builder.load(builder.gep(ap, [builder.add(bases[p], off)])), vec)
                    for v in range(nv):
                        builder.store(builder.call(fma, [xs, ws[v], builder.load(acc[p][v])]), acc[p][v])
            bs = [_vload(builder, bp, builder.add(c0v, ir.Constant(intp, v * n)), vec, align) for v in range(nv)]
            for p in range(rp):
                dst0 = builder.load(builder.gep(opixp, [builder.add(p0v, ir.Constant(intp, p))]))
                for v in range(nv):
                    value = builder.fadd(builder.load(acc[p][v]), bs[v])
                    for lane in range(n):
                        c = builder.add(c0v, ir.Constant(intp, v * n + lane))
                        dst = builder.gep(outp, [builder.add(dst0, builder.mul(c, ldcv))])
                        builder.store(builder.extract_element(value, ir.Constant(i32, lane)), dst)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _channel_dot_tile(rt: int, nv: int):
    """A :func:`dot_tile` over channels: ``rt`` taps by ``nv`` vectors of ``L`` channels.

    ``dw[(k0 + t)*lddw + c0 + c] += sum_{q < nq} a[pix[q0 + q] + offs[k0 + t]] * d[(q0 + q)*ldd + c0 + c]``
    for ``t < rt``, ``c < nv*L``: per pixel ``nv`` vector loads of ``d``,
    ``rt`` broadcasts of ``a``, ``rt*nv`` FMAs; every lane sums its own
    channel over the pixels in order (no sum across lanes).
    """

    @intrinsic
    def tile(typingctx, a, pix, q0, nq, offs, k0, d, c0, ldd, dw, lddw):
        sig = types.void(a, pix, q0, nq, offs, k0, d, c0, ldd, dw, lddw)

        def codegen(context, builder, signature, args):
            (ap, pixp, offp, dp, dwp), vec, n, fma, align = _setup(
                context, builder, _reorder(signature, (0, 1, 4, 6, 9)), _pick(args, (0, 1, 4, 6, 9)), 5
            )
            q0v, nqv, k0v, c0v, lddv, lddwv = (args[i] for i in (2, 3, 5, 7, 8, 10))
            intp = context.get_value_type(types.intp)
            zero = ir.Constant(vec, [ir.Constant(vec.element, 0.0)] * n)
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(rt)]
            taps = [builder.load(builder.gep(offp, [builder.add(k0v, ir.Constant(intp, t))])) for t in range(rt)]
            with cgutils.for_range(builder, nqv) as loop:
                q = builder.add(q0v, loop.index)
                base = builder.load(builder.gep(pixp, [q]))
                drow = builder.add(builder.mul(q, lddv), c0v)
                ds = [_vload(builder, dp, builder.add(drow, ir.Constant(intp, v * n)), vec, align) for v in range(nv)]
                for t in range(rt):
                    xs = _broadcast(builder, builder.load(builder.gep(ap, [builder.add(base, taps[t])])), vec)
                    for v in range(nv):
                        builder.store(builder.call(fma, [xs, ds[v], builder.load(acc[t][v])]), acc[t][v])
            for t in range(rt):
                row = builder.add(builder.mul(lddwv, builder.add(k0v, ir.Constant(intp, t))), c0v)
                for v in range(nv):
                    dst = builder.bitcast(builder.gep(dwp, [builder.add(row, ir.Constant(intp, v * n))]), vec.as_pointer())
                    builder.store(builder.fadd(builder.load(dst, align=align), builder.load(acc[t][v])), dst, align=align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


#: Channel vectors of the channel tiles (``CHANNEL_V * L`` channels per tile) and
#: pixels (forward) or taps (weight gradient) per tile: 24 accumulators.
CHANNEL_V, CHANNEL_R = 4, 6
channel_conv_tile = _channel_conv_tile(CHANNEL_R, CHANNEL_V)
channel_dot_tile = _channel_dot_tile(CHANNEL_R, CHANNEL_V)


def _lane_sum(builder, v):
    """Sum of the lanes of ``v`` by halving: lanes ``i`` and ``i + width/2`` added until one is left."""
    i32 = ir.IntType(32)
    width = v.type.count
    while width > 1:
        width //= 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, width), list(range(width))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, width), list(range(width, 2 * width))))
        v = builder.fadd(lo, hi)
    return builder.extract_element(v, ir.Constant(i32, 0))


def _pick(args, idx):
    return [args[i] for i in idx]


def _reorder(signature, idx):
    """A signature-like object whose ``args`` are the array arguments at ``idx``."""

    class _Sig:
        args = tuple(signature.args[i] for i in idx)

    return _Sig
