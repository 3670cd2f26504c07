"""Forward linear bounds (symbolic intervals) of every node of a general graph.

Every node y gets two linear functions of the input, Wl x + bl <= y <= Wu x + bu on the input
set, pushed forward in graph order (W: (n, *shape) per input set):
  affine y = L v + c:  with mid/radius Wm = (Wl + Wu) / 2, Wr = (Wu - Wl) / 2,
      Wl' = L Wm - |L| Wr,  Wu' = L Wm + |L| Wr  (= L+ Wl + L- Wu and L+ Wu + L- Wl),
      bl' = L bm - |L| br + c,  bu' = L bm + |L| br + c;
  elementwise f with lines a_l v + c_l <= f(v) <= a_u v + c_u on the node's concrete bounds:
      f >= a_l+ (Wl x + bl) + a_l- (Wu x + bu) + c_l (and symmetrically above);
  add and concat act function-wise. While no relaxation has been needed (every ReLU stable so
  far) Wl = Wu is one tensor and each affine op costs one pass instead of two. Concrete bounds are the min / max of those functions over
  the input set (sets.py), intersected with the interval bounds.

Cost: n (input features) forward passes of the network per input set, for all neurons at once;
CROWN's backward pass instead costs one pass per neuron bounded, which on CIFAR-size ResNets
is far more (every neuron IBP cannot prove stable). Used for the intermediate bounds of large
networks whose coefficients fit the memory limit (engine.memory_bytes); the final spec rows are
then bounded by a backward (CROWN) pass over these intermediate bounds.
"""

from __future__ import annotations

import math

import torch

from saferisk.bounds.footprint import FORWARD_MIN_ENTRIES, LIVE_FACTOR  # noqa: F401 (forward.FORWARD_MIN_ENTRIES)
from saferisk.bounds.ops import AFFINE_OPS, CONVEX_OPS, ELEMENTWISE_OPS, BoundsDeadline, elementwise_lines
from saferisk.bounds.sets import InputRegion
from saferisk.norms import dual_norm
from saferisk.models.graph import run_node

FORWARD_OPS_EXTRA = {"add", "concat", "constant"}


def forward_supported(engine) -> bool:
    """Whether every node of the engine's graph has a forward rule (no maxpool, no product of
    two variables, none of the convex ops of a rewritten softmax / layernorm: their lines may be missing)."""
    return all(node.op in (AFFINE_OPS | ELEMENTWISE_OPS | FORWARD_OPS_EXTRA) - CONVEX_OPS for node in engine.nodes)


def forward_entries(engine) -> int:
    """n input features x the largest node: the size of one node's coefficients."""
    largest = max([engine.n_inputs] + [int(torch.Size(s).numel()) for s in engine.shapes.values()])
    return engine.n_inputs * largest


def forward_bytes(engine) -> int:
    """Memory of forward bounds for one input set: LIVE_FACTOR tensors of n x the largest node."""
    return forward_entries(engine) * torch.finfo(engine.dtype).bits // 8 * LIVE_FACTOR


def forward_intermediate_bounds(engine, inset, ibp: dict) -> dict:
    """Bounds {name: (lower, upper) (B, *shape)} of the input and of every pre-activation node
    (engine.pre_nodes), each the intersection of the forward linear bounds with `ibp`."""
    parts = [_one_set(engine, inset.select(torch.tensor([b], device=inset.lower.device)),
                      {k: (v[0][b:b + 1], v[1][b:b + 1]) for k, v in ibp.items()}) for b in range(inset.batch)]
    return {name: (torch.cat([p[name][0] for p in parts]), torch.cat([p[name][1] for p in parts]))
            for name in parts[0]}


def _last_uses(engine) -> dict[str, int]:
    last = {}
    for i, node in enumerate(engine.nodes):
        for name in node.inputs:
            last[name] = i
    return last


def _concrete(inset, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """min over the input set of W x + b, per neuron: W (n, *shape), b (1, *shape) -> (1, *shape)."""
    n = W.shape[0]
    A = W.reshape(n, -1).T.unsqueeze(0)  # (1, neurons, n)
    return (inset.min_linear(A) + b.reshape(1, -1)).reshape(b.shape)


def linear_region_radius(engine, rows, x0: torch.Tensor, norm: str, unit: torch.Tensor | None,
                         safety: float = 1e-6) -> float:
    """A certified radius from one exact forward pass at x0, for piecewise-linear networks.

    With every ReLU stable the network is one affine map y = J x + b, and pre-activation i is
    W_i x + c_i with W_i exact (each layer's map is known once the layers before it are stable).
    Neuron i keeps its sign on B_p(x0, r) while r ||W_i * unit||_q < |W_i x0 + c_i| (Hölder), so
    every ReLU is stable for r < r_stable = min_i |pre_i(x0)| / ||W_i * unit||_q, by induction
    over the layers. There each spec row is A x + a with A = C J exact, positive while
    r ||A * unit||_q < s_row(x0). The result (shrunk by `safety`, relative) is a lower bound of the
    maximum safe radius (0 when a neuron sits at its kink or a row is not positive at x0).
    """
    if (not rows.on_logits or not forward_supported(engine)
            or any(node.op in ELEMENTWISE_OPS and node.op not in ("relu", "leaky_relu") for node in engine.nodes)):
        return 0.0  # not piecewise linear (or a spec on probabilities): no single affine piece
    stable = math.inf  # min over the pre-activations of |pre_i(x0)| / ||W_i * unit||_q

    def visit(name, func, value):
        nonlocal stable
        W = func[0]
        if W is None:  # a constant
            return
        A = W.reshape(W.shape[0], -1).T  # (neurons, n)
        norms = dual_norm(A if unit is None else A * unit, norm)
        ratio = value.reshape(-1).abs() / norms.clamp_min(1e-300)
        ratio = torch.where(norms > 0, ratio, torch.full_like(ratio, math.inf))
        stable = min(stable, float(ratio.min()))

    point = x0.reshape(1, -1)
    inset = InputRegion.box(point, point)
    ibp = engine.ibp(inset)
    funcs = _one_set(engine, inset, ibp, visit=visit, keep=engine.output_name)
    W_out, b_out = funcs[0], funcs[1]  # exact at radius 0: Wl is Wu
    m = int(b_out.numel())
    J = W_out.reshape(W_out.shape[0], m).T  # (m, n)
    A = rows.C @ J  # (S, n)
    margin = (A @ point.reshape(-1, 1)).reshape(-1) + rows.C @ b_out.reshape(-1) + rows.d
    row_norms = dual_norm(A if unit is None else A * unit, norm)

    def holds(r: float) -> bool:  # rows.combine is non-increasing in r: bisection is valid
        return bool(rows.combine((margin - r * row_norms)[None])[0] > 0)

    if not holds(0.0):
        return 0.0
    top = stable
    if not math.isfinite(top):
        per_row = margin / row_norms.clamp_min(1e-300)
        finite = per_row[(row_norms > 0) & (per_row > 0)]
        if finite.numel() == 0:
            return 0.0
        top = float(finite.max())
    if holds(top):
        return top * (1 - safety)
    lo, hi = 0.0, top
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        if hi - lo <= 1e-9 * hi:
            break
    return lo * (1 - safety)


def _one_set(engine, inset, ibp: dict, visit=None, keep: str | None = None):
    """Forward bounds over one input set: the bounds dict, or with `keep` the (Wl, bl, Wu, bu)
    of that node; visit(name, (Wl, bl, Wu, bu), lower bound) sees every pre-activation node."""

    engine.spend("computing forward linear bounds")
    n, shape_in = engine.n_inputs, engine.input_shape
    dtype, device = engine.dtype, engine.device
    eye = torch.eye(n, dtype=dtype, device=device).reshape((n,) + shape_in)
    zero = torch.zeros((1,) + shape_in, dtype=dtype, device=device)
    funcs = {engine.input_name: (eye, zero, eye, zero)}  # name -> (Wl, bl, Wu, bu); W None: a constant
    bounds = {engine.input_name: ibp[engine.input_name]}
    pre, last = set(engine.pre_nodes), _last_uses(engine)
    for i, node in enumerate(engine.nodes):
        if engine.budget is not None and engine.budget.over():  # the wall-clock cap, inside a long pass
            raise BoundsDeadline("the certification budget ended while computing forward linear bounds")
        op = node.op
        args = [funcs[name] for name in node.inputs] if op != "constant" else []
        if op == "constant":
            value = node.params["value"].to(dtype).unsqueeze(0)
            out = (None, value, None, value)
        elif op in AFFINE_OPS:
            out = _affine(engine, node, args[0])
        elif op == "add":
            out = _add(args)
        elif op == "concat":
            out = _concat(args, int(node.attrs["axis"]), n)
        else:  # elementwise: relaxed on the concrete bounds of its input
            lo, hi = bounds[node.inputs[0]]
            out = _elementwise(node, args[0], lo, hi)
        if node.output in pre:
            Wl, bl, Wu, bu = out
            lo, hi = ibp[node.output]
            if Wl is not None:
                lo = torch.maximum(lo, _concrete(inset, Wl, bl))
                hi = torch.minimum(hi, -_concrete(inset, -Wu, -bu))
            bounds[node.output] = (lo, hi)
            if visit is not None:
                visit(node.output, out, lo)
        funcs[node.output] = out
        for name in node.inputs:
            if last.get(name) == i and name != engine.input_name:
                funcs.pop(name, None)
    return funcs[keep] if keep is not None else bounds


def _affine(engine, node, arg):
    Wl, bl, Wu, bu = arg
    signed, absolute = engine._linear_part(node, True), engine._linear_part(node, False)
    bm, br = (bl + bu) / 2, (bu - bl) / 2
    b_mid, b_rad = run_node(node, [bm]), run_node(absolute, [br])
    if Wl is None:
        return None, b_mid - b_rad, None, b_mid + b_rad
    if Wu is Wl:  # exact so far (one linear function): one pass, no radius
        W = run_node(signed, [Wl])
        return W, b_mid - b_rad, W, b_mid + b_rad
    W_mid = run_node(signed, [Wl.add(Wu).mul_(0.5)])
    W_rad = run_node(absolute, [Wu.sub(Wl).mul_(0.5)])
    W_low = W_mid - W_rad
    return W_low, b_mid - b_rad, W_mid.add_(W_rad), b_mid + b_rad


def _add(args):
    (Wl1, bl1, Wu1, bu1), (Wl2, bl2, Wu2, bu2) = args

    def plus(a, b):
        return a if b is None else b if a is None else a + b

    Wl = plus(Wl1, Wl2)
    exact = (Wu1 is Wl1) and (Wu2 is Wl2)  # both exact: so is the sum (one tensor, shared)
    return Wl, bl1 + bl2, Wl if exact else plus(Wu1, Wu2), bu1 + bu2


def _concat(args, axis: int, n: int):
    """Concatenate along `axis` (counted with the batch dimension first, as in the graph)."""
    def coefficient(W, b):
        return W if W is not None else torch.zeros((n,) + tuple(b.shape[1:]), dtype=b.dtype, device=b.device)

    Wl = torch.cat([coefficient(a[0], a[1]) for a in args], dim=axis)
    exact = all(a[2] is a[0] for a in args)
    Wu = Wl if exact else torch.cat([coefficient(a[2], a[3]) for a in args], dim=axis)
    return Wl, torch.cat([a[1] for a in args], dim=axis), Wu, torch.cat([a[3] for a in args], dim=axis)


def _elementwise(node, arg, lo, hi):
    Wl, bl, Wu, bu = arg
    al, cl, au, cu = elementwise_lines(node, lo, hi)
    alp, aln, aup, aun = al.clamp(min=0), al.clamp(max=0), au.clamp(min=0), au.clamp(max=0)
    bl_new, bu_new = alp * bl + aln * bu + cl, aup * bu + aun * bl + cu
    if Wl is None:
        return None, bl_new, None, bu_new
    if Wu is Wl and bool(torch.equal(al, au)):  # every neuron stable (or a linear piece): still exact
        W = al * Wl
        return W, bl_new, W, bu_new
    return alp * Wl + aln * Wu, bl_new, aup * Wu + aun * Wl, bu_new
