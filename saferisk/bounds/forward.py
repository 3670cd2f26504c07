"""Forward linear bounds (symbolic intervals) of every node of a general graph.

Every node y gets two linear functions of the input, Wl x + bl <= y <= Wu x + bu on the input
set, pushed forward in graph order (W: (n, *shape) per input set):
  affine y = L v + c:  with mid/radius Wm = (Wl + Wu) / 2, Wr = (Wu - Wl) / 2,
      Wl' = L Wm - |L| Wr,  Wu' = L Wm + |L| Wr  (= L+ Wl + L- Wu and L+ Wu + L- Wl),
      bl' = L bm - |L| br + c,  bu' = L bm + |L| br + c;
  elementwise f with lines a_l v + c_l <= f(v) <= a_u v + c_u on the node's concrete bounds:
      f >= a_l+ (Wl x + bl) + a_l- (Wu x + bu) + c_l (and symmetrically above);
  add and concat act function-wise. Concrete bounds are the min / max of those functions over
  the input set (sets.py), intersected with the interval bounds.

Cost: n (input features) forward passes of the network per input set, for all neurons at once;
CROWN's backward pass instead costs one pass per neuron bounded, which on CIFAR-size ResNets
is far more (every neuron IBP cannot prove stable). Used for the intermediate bounds of large
networks whose coefficients fit the memory limit (engine.memory_bytes); the final spec rows are
then bounded by a backward (CROWN) pass over these intermediate bounds.
"""

from __future__ import annotations

import torch

from saferisk.bounds.relax import leaky_relu_relax, lipschitz_grid_relax, s_shaped_relax

FORWARD_OPS_EXTRA = {"add", "concat", "constant"}
LIVE_FACTOR = 20  # bytes of n x the largest node, x dtype size, at peak (measured: ResNet-18, 3x32x32)


def forward_supported(engine) -> bool:
    """Whether every node of the engine's graph has a forward rule (no maxpool, no product of
    two variables)."""
    from saferisk.bounds.engine import AFFINE_OPS, ELEMENTWISE_OPS

    return all(node.op in AFFINE_OPS | ELEMENTWISE_OPS | FORWARD_OPS_EXTRA for node in engine.nodes)


def forward_bytes(engine) -> int:
    """Memory of forward bounds for one input set: LIVE_FACTOR tensors of n x the largest node."""
    largest = max([engine.n_inputs] + [int(torch.Size(s).numel()) for s in engine.shapes.values()])
    return engine.n_inputs * largest * torch.finfo(engine.dtype).bits // 8 * LIVE_FACTOR


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


def _one_set(engine, inset, ibp: dict) -> dict:
    from saferisk.bounds.engine import AFFINE_OPS, _activation
    from saferisk.models.graph import run_node

    engine.spend("computing forward linear bounds")
    n, shape_in = engine.n_inputs, engine.input_shape
    dtype, device = engine.dtype, engine.device
    eye = torch.eye(n, dtype=dtype, device=device).reshape((n,) + shape_in)
    zero = torch.zeros((1,) + shape_in, dtype=dtype, device=device)
    funcs = {engine.input_name: (eye, zero, eye, zero)}  # name -> (Wl, bl, Wu, bu); W None: a constant
    bounds = {engine.input_name: ibp[engine.input_name]}
    pre, last = set(engine.pre_nodes), _last_uses(engine)
    for i, node in enumerate(engine.nodes):
        op = node.op
        args = [funcs[name] for name in node.inputs] if op != "constant" else []
        if op == "constant":
            value = node.params["value"].to(dtype).unsqueeze(0)
            out = (None, value, None, value)
        elif op in AFFINE_OPS:
            out = _affine(engine, node, args[0], run_node)
        elif op == "add":
            out = _add(args)
        elif op == "concat":
            out = _concat(args, int(node.attrs["axis"]), n)
        else:  # elementwise: relaxed on the concrete bounds of its input
            lo, hi = bounds[node.inputs[0]]
            out = _elementwise(node, args[0], lo, hi, _activation)
        if node.output in pre:
            Wl, bl, Wu, bu = out
            lo, hi = ibp[node.output]
            if Wl is not None:
                lo = torch.maximum(lo, _concrete(inset, Wl, bl))
                hi = torch.minimum(hi, -_concrete(inset, -Wu, -bu))
            bounds[node.output] = (lo, hi)
        funcs[node.output] = out
        for name in node.inputs:
            if last.get(name) == i and name != engine.input_name:
                funcs.pop(name, None)
    return bounds


def _affine(engine, node, arg, run_node):
    Wl, bl, Wu, bu = arg
    signed, absolute = engine._linear_part(node, True), engine._linear_part(node, False)
    bm, br = (bl + bu) / 2, (bu - bl) / 2
    b_mid, b_rad = run_node(node, [bm]), run_node(absolute, [br])
    if Wl is None:
        return None, b_mid - b_rad, None, b_mid + b_rad
    W_mid = run_node(signed, [Wl.add(Wu).mul_(0.5)])
    W_rad = run_node(absolute, [Wu.sub(Wl).mul_(0.5)])
    W_low = W_mid - W_rad
    return W_low, b_mid - b_rad, W_mid.add_(W_rad), b_mid + b_rad


def _add(args):
    (Wl1, bl1, Wu1, bu1), (Wl2, bl2, Wu2, bu2) = args

    def plus(a, b):
        return a if b is None else b if a is None else a + b

    return plus(Wl1, Wl2), bl1 + bl2, plus(Wu1, Wu2), bu1 + bu2


def _concat(args, axis: int, n: int):
    """Concatenate along `axis` (counted with the batch dimension first, as in the graph)."""
    def coefficient(W, b):
        return W if W is not None else torch.zeros((n,) + tuple(b.shape[1:]), dtype=b.dtype, device=b.device)

    Wl = torch.cat([coefficient(a[0], a[1]) for a in args], dim=axis)
    Wu = torch.cat([coefficient(a[2], a[3]) for a in args], dim=axis)
    return Wl, torch.cat([a[1] for a in args], dim=axis), Wu, torch.cat([a[3] for a in args], dim=axis)


def _elementwise(node, arg, lo, hi, activation):
    from saferisk.bounds.engine import LIPSCHITZ_OPS

    Wl, bl, Wu, bu = arg
    op = node.op
    if op in ("relu", "leaky_relu"):
        slope = 0.0 if op == "relu" else float(node.attrs.get("alpha", 0.01))
        al, cl, au, cu = leaky_relu_relax(lo, hi, slope)
    elif op in LIPSCHITZ_OPS:
        al, cl, au, cu = lipschitz_grid_relax(*activation(node), lo, hi)
    else:
        al, cl, au, cu = s_shaped_relax(op, lo, hi)
    alp, aln, aup, aun = al.clamp(min=0), al.clamp(max=0), au.clamp(min=0), au.clamp(max=0)
    bl_new, bu_new = alp * bl + aln * bu + cl, aup * bu + aun * bl + cu
    if Wl is None:
        return None, bl_new, None, bu_new
    return alp * Wl + aln * Wu, bl_new, aup * Wu + aun * Wl, bu_new
