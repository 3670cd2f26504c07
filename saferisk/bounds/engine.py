"""Bound propagation over saferisk's internal `Graph`: interval bounds (IBP) and linear
relaxation back-substitution (CROWN), batched over B input sets, with optional optimised ReLU
slopes (alpha) and ReLU split constraints (branch and bound).

Composite ops (softmax anywhere, layernorm, matmul of two variables) are first rewritten into
primitive nodes (decompose.py; the nodes keep the user's labels): products of two variables,
linear maps and the convex elementwise ops exp, reciprocal, rsqrt and square (ops.py).

IBP: for an affine op y = M x + c, mid_y = M mid_x + c and rad_y = |M| rad_x (the monotone sums
reduce_sum / reduce_mean map (l, u) to (f(l), f(u)): an infinite upper bound of exp stays
finite-safe); monotone elementwise ops and max-pooling map (l, u) to (f(l), f(u)); a convex op
to its range over [l, u]; add and concat act bound-wise; x y to the min / max of the corner products.

CROWN: a lower bound of A . y_t (node t, rows A (B, K, *shape_t)) is found by walking the graph
backwards: through an affine op A -> A M (bias += A c, exact); through an elementwise
nonlinearity with lines a_l x + b_l <= f(x) <= a_u x + b_u (see relax.py) A -> A+ a_l + A- a_u
(bias += A+ b_l + A- b_u, sound since A+ >= 0 picks the lower line, A- <= 0 the upper one; a
row that needs a line a convex op cannot give in float64 gets bound -inf);
through x y the McCormick planes;
through max-pooling the window's element i with the largest lower bound gives
max >= x_i, and max <= x_i when l_i >= u_j for every other j, else max <= max_j u_j; add sends A
to both summands, concat splits it. At the input, A . x is minimised over the input set
(sets.py). The pre-activation bounds the relaxations need are themselves computed this way (rows
[I; -I]), intersected with the IBP bounds (both are sound, so the intersection is).

Computation runs in float64 on the device of the graph's tensors (or a given device).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import saferisk.bounds.decompose as decompose
import saferisk.bounds.forward as forward
from saferisk.bounds.ops import (  # noqa: F401 (UnsupportedGraph, BoundsDeadline: part of this module's API)
    AFFINE_OPS, COMPOSITE_OPS, CONVEX_OPS, ELEMENTWISE_OPS, LINEAR_OPS, LIPSCHITZ_OPS, SUPPORTED_OPS, BoundsDeadline,
    UnsupportedGraph, _activation, convex_interval, elementwise_lines, run_node)
from saferisk.bounds.relax import default_alpha, leaky_relu_relax, lipschitz_grid_values
from saferisk.bounds.sets import InputRegion
from saferisk.bounds.footprint import ROW_BYTES_FACTOR
from saferisk.models.graph import Graph, Node


DENSE_MAX_ENTRIES = 1 << 22  # 32 MB in float64
DEFAULT_MEMORY_BYTES = 2 << 30  # back-substitution memory when the caller sets none (2 GiB)


def _node_label(node: Node) -> str:
    return node.name or node.output


def _prune(graph: Graph, output: str) -> list[Node]:
    """Nodes that `output` depends on, in topological order."""
    needed = {output}
    kept = []
    for node in reversed(graph.nodes):
        if node.output in needed:
            kept.append(node)
            needed.update(node.inputs)
    return kept[::-1]


class BoundEngine:
    """A graph prepared for bounds: supported-op check, float64 parameters, per-node shapes.

    If the graph's last op is a softmax over the output, bounds are computed on its input
    (`softmax_output` is True) and the caller decides how to pass the softmax (spec.py).
    """

    def __init__(self, graph: Graph, device: torch.device | str | None = None):
        if device is None:
            device = next((v.device for n in graph.nodes for v in n.params.values() if v is not None),
                          torch.device("cpu"))
        self.device = torch.device(device)
        self.dtype = torch.float64
        self.graph = graph.to(self.device, self.dtype)
        last = self._split_softmax()
        self.nodes = _prune(self.graph, self.output_name)
        self._check_ops()
        self.input_name = self.graph.input_name
        self.input_shape = tuple(int(d) for d in self.graph.input_shape)
        self.n_inputs = int(torch.tensor(self.input_shape).prod()) if self.input_shape else 1
        self.shapes = self._shapes()
        if any(node.op in COMPOSITE_OPS for node in self.nodes):
            self.nodes = decompose.decompose(self.nodes, self.shapes, self.device, self.dtype)
            self.shapes = self._shapes()
        self.memory_bytes = DEFAULT_MEMORY_BYTES
        self._linear_parts: dict[tuple[str, bool], Node] = {}
        self.budget = None  # saferisk.bounds.budget.Budget: every bound pass spends one unit of it
        self.forward_min_neurons: int | None = None  # more ReLUs: forward intermediate bounds (None: never)
        self.max_neurons_per_node: int | None = None  # more unstable neurons: keep the node's IBP bounds
        self.max_numel_upto, largest = {self.input_name: math.prod(self.input_shape)}, math.prod(self.input_shape)
        for node in self.nodes:
            largest = max(largest, math.prod(self.shapes[node.output]))
            self.max_numel_upto[node.output] = largest
        self._check_shapes(last)
        self.n_outputs = int(torch.tensor(self.output_shape).prod()) if self.output_shape else 1
        self._find_relaxed_nodes()
        self._precompute_linear()

    def _split_softmax(self) -> Node | None:
        """Set output_name (and softmax_output, softmax_axis): a final softmax is left to the
        caller, bounds stop at its input. Returns the graph's last node."""
        by_output = {n.output: n for n in self.graph.nodes}
        output = self.graph.output_name
        self.softmax_output = False
        last = by_output.get(output)
        if last is not None and last.op == "softmax":
            axis = int(last.attrs.get("axis", 1))
            self.softmax_output = True
            self.softmax_axis = axis
            output = last.inputs[0]
        self.output_name = output
        return last

    def _check_ops(self) -> None:
        """UnsupportedGraph for an operation the bounds have no rule for."""
        for node in self.nodes:
            if node.op not in SUPPORTED_OPS:
                raise UnsupportedGraph(f"unsupported operation '{node.op}' in node '{_node_label(node)}'")

    def _check_shapes(self, last: Node | None) -> None:
        """UnsupportedGraph for broadcasting affine / add nodes and a final softmax over a
        non-flat output; sets output_shape."""
        for node in self.nodes:
            if node.op == "affine" and self.shapes[node.output] != self.shapes[node.inputs[0]]:
                raise UnsupportedGraph(f"unsupported operation 'affine' in node '{_node_label(node)}' "
                                       "(broadcasting changes the shape)")
            if node.op == "add" and len({self.shapes[i] for i in node.inputs}) != 1:
                raise UnsupportedGraph(f"unsupported operation 'add' in node '{_node_label(node)}' (broadcasting)")
        self.output_shape = self.shapes[self.output_name]
        if self.softmax_output and (len(self.output_shape) != 1 or self.softmax_axis not in (1, -1)):
            raise UnsupportedGraph(f"unsupported operation 'softmax' in node '{_node_label(last)}' "
                                   "(only a final softmax over a flat output is supported)")

    def _find_relaxed_nodes(self) -> None:
        """The graph structure the relaxations need: pre_nodes (inputs of nonlinear ops, whose
        bounds are computed first, in graph order), the ReLU nodes, the nodes computed from the
        input by affine ops only, and which pre-activations feed ReLUs only."""
        self.pre_nodes = []
        for node in self.nodes:
            if node.op in ELEMENTWISE_OPS or node.op == "maxpool":
                if node.inputs[0] not in self.pre_nodes:
                    self.pre_nodes.append(node.inputs[0])
            if node.op == "mul":
                self.pre_nodes += [i for i in node.inputs if i not in self.pre_nodes and i not in self.constants_names()]
        order = {self.input_name: -1, **{n.output: k for k, n in enumerate(self.nodes)}}
        self.pre_nodes.sort(key=order.__getitem__)  # a node's bound may need those of the nodes before it
        self.relu_nodes = [n for n in self.nodes if n.op in ("relu", "leaky_relu")]
        self.relu_neurons = sum(math.prod(self.shapes[n.output]) for n in self.relu_nodes)
        # nodes computed from the input by affine ops only (their CROWN bound needs one pass)
        self.affine_only = {self.input_name}
        for node in self.nodes:
            if node.op in AFFINE_OPS | {"add", "concat", "constant"} and all(
                    i in self.affine_only or i in self.constants_names() for i in node.inputs):
                self.affine_only.add(node.output)
        consumers: dict[str, list[str]] = {}
        for node in self.nodes:
            for i in node.inputs:
                consumers.setdefault(i, []).append(node.op)
        self.relu_only_consumers = {name: all(op in ("relu", "leaky_relu") for op in consumers.get(name, []))
                                    for name in self.pre_nodes}

    def _precompute_linear(self) -> None:
        """Constants, the offsets f(0) of LINEAR_OPS nodes where not 0, and small convolutions /
        average pools as dense matrices: back-substitution is then one matrix product instead of
        a transposed convolution (float64 convolutions are slow on CPU)."""
        self.constants = {n.output: n.params["value"] for n in self.nodes if n.op == "constant"}
        self.offsets = {}  # f(0) of the LINEAR_OPS nodes where it is not 0
        for node in self.nodes:
            if node.op in LINEAR_OPS:
                zero = torch.zeros((1,) + self.shapes[node.inputs[0]], dtype=self.dtype, device=self.device)
                offset = run_node(node, [zero])
                if bool((offset != 0).any()):
                    self.offsets[node.output] = offset
        self.dense = {}
        for node in self.nodes:
            if node.op in ("conv", "avgpool"):
                n_in, n_out = math.prod(self.shapes[node.inputs[0]]), math.prod(self.shapes[node.output])
                if n_in * n_out <= DENSE_MAX_ENTRIES:
                    basis = torch.eye(n_in, dtype=self.dtype, device=self.device)
                    basis = basis.reshape((n_in,) + self.shapes[node.inputs[0]])
                    with torch.no_grad():
                        columns = run_node(_abs_node(node, keep_sign=True), [basis]).reshape(n_in, n_out)
                    self.dense[node.output] = columns.T.contiguous()  # (n_out, n_in)

    # ------------------------------------------------------------------ helpers
    def constants_names(self) -> set[str]:
        return {n.output for n in self.nodes if n.op == "constant"}

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        values = {self.input_name: torch.zeros((1,) + self.input_shape, dtype=self.dtype, device=self.device)}
        shapes = {self.input_name: self.input_shape}
        for node in self.nodes:
            if node.op == "constant":
                values[node.output] = node.params["value"]
                shapes[node.output] = tuple(node.params["value"].shape)
                continue
            out = run_node(node, [values[i] for i in node.inputs])
            values[node.output] = out
            shapes[node.output] = tuple(out.shape[1:])
        return shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (before a final softmax) for flat inputs (B, n) -> (B, n_outputs)."""
        values = {self.input_name: x.to(self.device, self.dtype).reshape((x.shape[0],) + self.input_shape)}
        for node in self.nodes:
            if node.op == "constant":
                values[node.output] = node.params["value"].expand((x.shape[0],) + tuple(node.params["value"].shape))
                continue
            values[node.output] = run_node(node, [values[i] for i in node.inputs])
        return values[self.output_name].reshape(x.shape[0], -1)

    # ------------------------------------------------------------------ IBP
    def spend(self, what: str) -> None:
        """One unit of the budget for one bound pass; BoundsDeadline once the budget is over."""
        if self.budget is not None:
            self.budget.spend(1)
            if self.budget.over():
                raise BoundsDeadline(f"the certification budget ended while {what}")

    def ibp(self, inset: InputRegion) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Interval bounds of every node: name -> (lower, upper), each (B, *shape)."""
        self.spend("computing interval bounds")
        B = inset.batch
        bounds = {self.input_name: (inset.lower.reshape((B,) + self.input_shape),
                                    inset.upper.reshape((B,) + self.input_shape))}
        for node in self.nodes:
            bounds[node.output] = self._ibp_node(node, [bounds[i] for i in node.inputs] if node.op != "constant" else [], B)
        return bounds

    def _ibp_node(self, node, args, B):
        op = node.op
        if op == "constant":
            v = node.params["value"].expand((B,) + tuple(node.params["value"].shape))
            return v, v
        if op in ("relu", "tanh", "sigmoid", "maxpool", "reduce_sum", "reduce_mean"):  # monotone (no inf - inf)
            return run_node(node, [args[0][0]]), run_node(node, [args[0][1]])
        if op in AFFINE_OPS:
            lo, hi = args[0]
            mid, rad = (lo + hi) / 2, (hi - lo) / 2
            out_mid = run_node(node, [mid])
            out_rad = run_node(self._linear_part(node, False), [rad])
            return out_mid - out_rad, out_mid + out_rad
        if op in CONVEX_OPS:
            return convex_interval(node, *args[0])
        if op == "leaky_relu":
            lo, hi = args[0]
            flo, fhi = run_node(node, [lo]), run_node(node, [hi])
            straddle = (lo < 0) & (hi > 0)
            low = torch.where(straddle, torch.minimum(torch.minimum(flo, fhi), torch.zeros_like(lo)), torch.minimum(flo, fhi))
            return low, torch.maximum(flo, fhi)
        if op in LIPSCHITZ_OPS:
            return lipschitz_grid_values(*_activation(node), args[0][0], args[0][1])
        if op == "add":
            return args[0][0] + args[1][0], args[0][1] + args[1][1]
        if op == "mul":
            (lx, ux), (ly, uy) = args
            corners = torch.stack(torch.broadcast_tensors(lx * ly, lx * uy, ux * ly, ux * uy))
            bound = float(node.attrs.get("bound", math.inf))  # |x y| <= bound, known to a rewrite (decompose.py)
            return corners.amin(dim=0).clamp(min=-bound), corners.amax(dim=0).clamp(max=bound)
        if op == "concat":
            axis = int(node.attrs["axis"])
            return torch.cat([a[0] for a in args], dim=axis), torch.cat([a[1] for a in args], dim=axis)
        raise UnsupportedGraph(f"unsupported operation '{op}' in node '{_node_label(node)}'")

    # ------------------------------------------------------------------ CROWN
    def intermediate_bounds(self, inset: InputRegion, method: str = "crown", alphas: dict | None = None,
                            splits: dict | None = None, ibp: dict | None = None) -> dict:
        """Bounds of the inputs of every nonlinear op (and the input box), split constraints applied.

        alphas: {(relu output name, target name): tensor (B, G, *shape)} optimised lower slopes
        (created on first use when the dict is given); splits: {pre-node name: int tensor
        (B, *shape) in {-1, 0, +1}} (-1: x <= 0, +1: x >= 0).
        """
        ibp = self.ibp(inset) if ibp is None else ibp
        if method == "crown" and alphas is None and splits is None and self.forward_is_cheaper():
            return forward.forward_intermediate_bounds(self, inset, ibp)
        B = inset.batch
        pre = set(self.pre_nodes)
        # one sweep in graph order: each node's interval is recomputed from the bounds tightened
        # so far (IBP through tight bounds is far tighter than the first IBP pass on deep nets:
        # fewer unstable neurons, fewer CROWN rows), intersected with what `ibp` already knew
        current = {self.input_name: self._split(self.input_name, ibp[self.input_name], splits)}
        bounds = {self.input_name: current[self.input_name]}
        for node in self.nodes:
            args = [current[i] for i in node.inputs] if node.op != "constant" else []
            lo, hi = self._ibp_node(node, args, B)
            if node.output in ibp:
                lo, hi = torch.maximum(lo, ibp[node.output][0]), torch.minimum(hi, ibp[node.output][1])
            if node.output in pre:
                if method != "ibp":
                    lo, hi = self._crown_node_bounds(node.output, lo, hi, inset, bounds, alphas)
                lo, hi = self._split(node.output, (lo, hi), splits)
                bounds[node.output] = (lo, hi)
            current[node.output] = (lo, hi)
        return bounds

    def forward_is_cheaper(self) -> bool:
        """Forward linear bounds (forward.py) instead of one CROWN row pair per neuron: for networks
        with more than `forward_min_neurons` ReLU neurons (set from certify.crown_max_neurons) and
        at least forward.FORWARD_MIN_ENTRIES input features x largest node, when every op has a
        forward rule and their memory fits the limit."""
        if self.forward_min_neurons is None or self.relu_neurons <= self.forward_min_neurons:
            return False
        if forward.forward_entries(self) < forward.FORWARD_MIN_ENTRIES:
            return False  # small inputs: CROWN's rows are affordable, and far tighter on deep nets
        return forward.forward_supported(self) and forward.forward_bytes(self) <= self.memory_bytes

    def _linear_part(self, node: Node, keep_sign: bool) -> Node:
        """`_abs_node(node, keep_sign)`, made once per node (IBP and CROWN use it on every pass)."""
        key = (node.output, keep_sign)
        if key not in self._linear_parts:
            self._linear_parts[key] = _abs_node(node, keep_sign=keep_sign)
        return self._linear_parts[key]

    @staticmethod
    def _split(name: str, bound, splits: dict | None):
        """Bounds with the ReLU split constraints of `name` applied (x >= 0 or x <= 0)."""
        lo, hi = bound
        if splits is not None and name in splits:
            s = splits[name]
            lo = torch.where(s > 0, lo.clamp_min(0), lo)
            hi = torch.where(s < 0, hi.clamp_max(0), hi)
        return lo, hi

    FORWARD_OPS = {"linear", "affine", "flatten", "reshape", "identity", "relu", "leaky_relu", "tanh", "sigmoid"} | LIPSCHITZ_OPS

    def supports_forward(self) -> bool:
        """A chain of ops forward linear bounds handle (each node reads the previous one)."""
        previous = self.input_name
        for node in self.nodes:
            if node.op not in self.FORWARD_OPS or list(node.inputs) != [previous]:
                return False
            if node.op == "linear" and len(self.shapes[node.inputs[0]]) != 1:
                return False
            previous = node.output
        return True

    def forward_bounds(self, inset: InputRegion, ibp: dict) -> dict:
        """Bounds of the inputs of every nonlinear op by forward linear bounds (symbolic intervals).

        Every node y gets linear functions of the input, Wl x + bl <= y <= Wu x + bu, pushed
        forward: through y = M v + c, Wl' = M+ Wl + M- Wu (bl' likewise, + c), Wu' symmetric;
        through an elementwise op with lines a_l v + b_l <= f(v) <= a_u v + b_u on the node's
        bounds, f >= a_l+ (Wl x + bl) + a_l- (Wu x + bu) + b_l (and symmetrically above).
        Concrete bounds are the min / max of those functions over the input set, intersected
        with IBP. Cost O(layers x width^2 x n): for few inputs (input splitting) much cheaper
        than CROWN's backward pass per intermediate layer, somewhat looser. Only for chains of
        FORWARD_OPS (supports_forward()).
        """
        B, n = inset.batch, self.n_inputs
        eye = torch.eye(n, dtype=self.dtype, device=self.device).expand(B, n, n)
        zero = torch.zeros(B, n, dtype=self.dtype, device=self.device)
        Wl, bl, Wu, bu = eye, zero, eye, zero
        bounds = {self.input_name: ibp[self.input_name]}
        pre = set(self.pre_nodes)
        for node in self.nodes:
            op, p = node.op, node.params
            if op == "linear":
                M = p["weight"]
                Mp, Mn = M.clamp(min=0), M.clamp(max=0)
                c = p.get("bias")
                # (B, n, d) @ (d, d') is one GEMM; M @ W would broadcast M over the batch
                WlT, WuT = Wl.transpose(1, 2), Wu.transpose(1, 2)
                Wl = (WlT @ Mp.T + WuT @ Mn.T).transpose(1, 2)
                Wu = (WuT @ Mp.T + WlT @ Mn.T).transpose(1, 2)
                bl, bu = bl @ Mp.T + bu @ Mn.T, bu @ Mp.T + bl @ Mn.T
                if c is not None:
                    bl, bu = bl + c, bu + c
            elif op == "affine":
                shape = self.shapes[node.output]
                scale = p.get("scale")
                shift = p.get("shift")
                if scale is not None:
                    k = scale.expand(shape).reshape(1, -1)
                    kp, kn = k.clamp(min=0), k.clamp(max=0)
                    Wl, Wu = kp[..., None] * Wl + kn[..., None] * Wu, kp[..., None] * Wu + kn[..., None] * Wl
                    bl, bu = kp * bl + kn * bu, kp * bu + kn * bl
                if shift is not None:
                    t = shift.expand(shape).reshape(1, -1)
                    bl, bu = bl + t, bu + t
            elif op in ELEMENTWISE_OPS:
                lo, hi = bounds[node.inputs[0]]
                lo, hi = lo.reshape(B, -1), hi.reshape(B, -1)
                al, cl, au, cu = elementwise_lines(node, lo, hi)
                alp, aln, aup, aun = al.clamp(min=0), al.clamp(max=0), au.clamp(min=0), au.clamp(max=0)
                Wl, Wu = alp[..., None] * Wl + aln[..., None] * Wu, aup[..., None] * Wu + aun[..., None] * Wl
                bl, bu = alp * bl + aln * bu + cl, aup * bu + aun * bl + cu
            # flatten / reshape / identity: the flat (row-major) functions are unchanged
            if node.output in pre:
                lo_i, hi_i = ibp[node.output]
                shape = lo_i.shape
                lo_f = inset.min_linear(Wl) + bl
                hi_f = -(inset.min_linear(-Wu) - bu)
                lo_i = torch.maximum(lo_i.reshape(B, -1), lo_f).reshape(shape)
                hi_i = torch.minimum(hi_i.reshape(B, -1), hi_f).reshape(shape)
                bounds[node.output] = (lo_i, hi_i)
        return bounds

    def neurons_to_bound(self, name: str, lo_flat: torch.Tensor, hi_flat: torch.Tensor, index=None):
        """(index, rows): the neurons of node `name` whose bounds are worth tightening (before a
        ReLU only the unstable ones, lo < 0 < hi in some batch row; else all) and one unit row
        e_i (k, size) per neuron, for backward passes of y_i (`index` given: those neurons)."""
        size = lo_flat.shape[1]
        if index is None:
            index = self.neurons_worth_bounding(name, lo_flat, hi_flat)
        k = int(index.numel())
        eye = torch.zeros(k, size, dtype=self.dtype, device=lo_flat.device)
        eye[torch.arange(k, device=lo_flat.device), index] = 1.0
        return index, eye

    def neurons_worth_bounding(self, name: str, lo_flat: torch.Tensor, hi_flat: torch.Tensor) -> torch.Tensor:
        """Indices of the neurons of `name` to tighten: before ReLUs only the unstable ones."""
        if self.relu_only_consumers[name]:
            return ((lo_flat < 0) & (hi_flat > 0)).any(dim=0).nonzero().flatten()
        return torch.arange(lo_flat.shape[1], device=lo_flat.device)

    def rows_per_pass(self, name: str, batch: int, signs: int = 2) -> int:
        """How many neurons of `name` one back-substitution may bound within `memory_bytes`: each
        row keeps about ROW_BYTES_FACTOR coefficient tensors of the largest node before `name`."""
        per_neuron = batch * signs * self.max_numel_upto[name] * torch.finfo(self.dtype).bits // 8 * ROW_BYTES_FACTOR
        return max(1, int(self.memory_bytes // max(1, per_neuron)))

    def _crown_node_bounds(self, name, lo, hi, inset, bounds, alphas):
        """CROWN bounds of node `name` intersected with (lo, hi); only for neurons that matter,
        in passes of at most `rows_per_pass` neurons (bounded memory, the same bounds).

        Before a ReLU only neurons unstable under (lo, hi) need a tighter bound: the relaxation
        of a stable ReLU is exact already.
        """
        B = inset.batch
        shape = self.shapes[name]
        lo_flat, hi_flat = lo.reshape(B, -1), hi.reshape(B, -1)
        index = self.neurons_worth_bounding(name, lo_flat, hi_flat)
        if int(index.numel()) == 0:
            return lo, hi
        if self.max_neurons_per_node is not None and int(index.numel()) > self.max_neurons_per_node:
            return lo, hi  # too many rows for the work budget: the interval bounds stand (sound)
        affine = name in self.affine_only
        step = self.rows_per_pass(name, B, 1 if affine else 2)
        lows, highs = [], []
        for part in torch.split(index, step):
            _, eye = self.neurons_to_bound(name, lo_flat, hi_flat, index=part)
            k = int(part.numel())
            if affine:  # no relaxation on the way: upper = -lower of -rows
                rows = eye.reshape((1, k) + shape).expand((B, k) + shape)
                A_in, bias = self.backward(name, rows, bounds)
                A_in = A_in.reshape(B, k, -1)
                lb = torch.cat([inset.min_linear(A_in) + bias, inset.min_linear(-A_in) - bias], dim=1)
            else:
                rows = torch.cat([eye, -eye]).reshape((1, 2 * k) + shape).expand((B, 2 * k) + shape)
                lb = self.lower_bound(name, rows, inset, bounds, alphas, target_groups=2)
            lows.append(lb[:, :k])
            highs.append(-lb[:, k:])
        lb_lo, ub_hi = torch.cat(lows, dim=1), torch.cat(highs, dim=1)
        lo_new = lo_flat.index_copy(1, index, torch.maximum(lo_flat[:, index], lb_lo))
        hi_new = hi_flat.index_copy(1, index, torch.minimum(hi_flat[:, index], ub_hi))
        return lo_new.reshape(lo.shape), hi_new.reshape(hi.shape)

    def lower_bound(self, target: str, A: torch.Tensor, inset: InputRegion, bounds: dict,
                    alphas: dict | None = None, target_groups: int = 1, record: dict | None = None,
                    betas: dict | None = None) -> torch.Tensor:
        """Sound lower bound of min_{x in S_b} A[b, k] . y_target(x) -> (B, K)."""
        A_in, bias = self.backward(target, A, bounds, alphas, target_groups, record, betas)
        B, K = A.shape[:2]
        return inset.min_linear(A_in.reshape(B, K, -1)) + bias

    def backward(self, target: str, A: torch.Tensor, bounds: dict, alphas: dict | None = None,
                 target_groups: int = 1, record: dict | None = None, betas: dict | None = None):
        """Back-substitute A . y_target to the input: returns (A_input (B, K, *input_shape), bias (B, K)).

        betas: {pre-node name: (beta (B, K, *shape) >= 0, split sign (B, *shape))} adds the
        Lagrangian terms of the split constraints (beta-CROWN): on {x_i >= 0}, f >= f - beta x_i, on
        {x_i <= 0}, f >= f + beta x_i, so adding -sign * beta to x_i's coefficient keeps the bound sound.
        """
        self.spend(f"bounding node '{target}'")
        B, K = A.shape[:2]
        pending = {target: A}
        bias = torch.zeros(B, K, dtype=self.dtype, device=self.device)
        index = next(i for i, n in enumerate(self.nodes) if n.output == target) if target != self.input_name else -1
        for node in reversed(self.nodes[: index + 1]):
            coef = pending.pop(node.output, None)
            if coef is None:
                continue
            if betas is not None and node.output in betas:
                beta, sign = betas[node.output]
                coef = coef - beta * sign.unsqueeze(1).to(coef.dtype)
            if node.op == "constant":
                bias = bias + (coef * node.params["value"]).reshape(B, K, -1).sum(-1)
                continue
            contributions, extra = self._backward_node(node, coef, bounds, alphas, target, target_groups, record)
            if extra is not None:
                bias = bias + extra
            for name, c in contributions:
                pending[name] = pending[name] + c if name in pending else c
        A_in = pending.pop(self.input_name, None)
        if A_in is None:
            A_in = torch.zeros((B, K) + self.input_shape, dtype=self.dtype, device=self.device)
        return A_in, bias

    def _backward_node(self, node, coef, bounds, alphas, target, groups, record):
        op, p, a = node.op, node.params, node.attrs
        B, K = coef.shape[:2]
        x = node.inputs[0] if node.inputs else None
        in_shape = self.shapes[x] if x is not None else ()
        if op == "linear":
            bias = p.get("bias")
            # per-token linear maps (x of shape (..., k)) add the bias at every leading position
            return [(x, coef @ p["weight"])], ((coef @ bias).reshape(B, K, -1).sum(-1) if bias is not None else None)
        if op in ("identity",):
            return [(x, coef)], None
        if op in ("flatten", "reshape"):
            return [(x, coef.reshape((B, K) + in_shape))], None
        if op == "transpose":
            perm = [int(i) for i in a["perm"]]
            inverse = [perm.index(i) for i in range(len(perm))]
            return [(x, coef.permute(0, 1, *[i + 2 for i in inverse]))], None
        if op == "affine":
            scale, shift = p.get("scale"), p.get("shift")
            extra = None
            if shift is not None:
                extra = (coef * shift).reshape(B, K, -1).sum(-1)
            return [(x, coef * scale if scale is not None else coef)], extra
        if op in ("conv", "avgpool"):
            extra = None
            if op == "conv" and p.get("bias") is not None:
                extra = (coef.sum(dim=(3, 4)) * p["bias"]).sum(-1)
            if node.output in self.dense:
                to_x = (coef.reshape(B, K, -1) @ self.dense[node.output]).reshape((B, K) + in_shape)
            else:
                to_x = _linear_vjp(self._linear_part(node, True), coef, in_shape)
            return [(x, to_x)], extra
        if op in LINEAR_OPS:
            offset = self.offsets.get(node.output)
            extra = None if offset is None else _row_dot(coef, offset.unsqueeze(1).expand((B, 1) + tuple(offset.shape[1:])))
            return [(x, _linear_vjp(self._linear_part(node, True), coef, in_shape))], extra
        if op == "add":
            return [(name, coef) for name in node.inputs], None
        if op == "mul":
            return self._mul_backward(node, coef, bounds)
        if op == "concat":
            axis = int(a["axis"])
            sizes = [self.shapes[name][axis - 1] for name in node.inputs]
            parts = torch.split(coef, sizes, dim=axis + 1)
            return list(zip(node.inputs, parts)), None
        if op in ELEMENTWISE_OPS:
            lo, hi = bounds[x]
            if op in ("relu", "leaky_relu") and alphas is not None:  # optimised lower slopes
                slope = 0.0 if op == "relu" else float(a.get("alpha", 0.01))
                key = (node.output, target)
                if key not in alphas:
                    alphas[key] = default_alpha(lo, hi).unsqueeze(1).expand((B, groups) + in_shape).clone().requires_grad_(True)
                g = alphas[key]
                alpha = g.unsqueeze(2).expand((B, groups, K // groups) + in_shape).reshape((B, K) + in_shape)
                al, bl, au, bu = leaky_relu_relax(lo.unsqueeze(1), hi.unsqueeze(1), slope, alpha)
            else:
                al, bl, au, bu = (t.unsqueeze(1) for t in elementwise_lines(node, lo, hi))
            # A+ a_l + A- a_u = A a_u + A+ (a_l - a_u);  A+ b_l + A- b_u = A b_u + A+ (b_l - b_u)
            pos = coef.clamp(min=0)
            if op in CONVEX_OPS:
                return [(x, torch.addcmul(coef * au, pos, al - au))], _missing_line_bias(coef, pos, bl, bu)
            if record is not None:
                record[x] = (coef, bu)
            return [(x, torch.addcmul(coef * au, pos, al - au))], _row_dot(coef, bu) + _row_dot(pos, bl - bu)
        if op == "maxpool":
            return self._maxpool_backward(node, coef, bounds[x], in_shape)
        raise UnsupportedGraph(f"unsupported operation '{op}' in node '{_node_label(node)}'")

    def _mul_backward(self, node, coef, bounds):
        """z = x y with x in [lx, ux], y in [ly, uy] (McCormick planes):
        z >= ly x + lx y - lx ly (as (x - lx)(y - ly) >= 0) and z <= uy x + lx y - lx uy (as
        (x - lx)(uy - y) >= 0); rows A+ take the lower plane, A- the upper one. Broadcast
        dimensions of x or y are summed out of their coefficients."""
        B, K = coef.shape[:2]
        out_shape = tuple(coef.shape[2:])
        x_name, y_name = node.inputs
        (lx, ux), (ly, uy) = (bounds[x_name] if x_name in bounds else self._constant_bounds(x_name, B),
                              bounds[y_name] if y_name in bounds else self._constant_bounds(y_name, B))
        lx, ux, ly, uy = (_expand_per_sample(t, out_shape).unsqueeze(1) for t in (lx, ux, ly, uy))
        pos, neg = coef.clamp(min=0), coef.clamp(max=0)
        to_x = pos * ly + neg * uy
        to_y = coef * lx
        extra = -_row_dot(pos, lx * ly) - _row_dot(neg, lx * uy)
        out = []
        for name, c in ((x_name, to_x), (y_name, to_y)):
            if name in self.constants:
                extra = extra + (c * _expand_per_sample(self.constants[name].unsqueeze(0), out_shape)).reshape(B, K, -1).sum(-1)
            else:
                out.append((name, _sum_to_shape(c, self.shapes[name])))
        return out, extra

    def _constant_bounds(self, name, B):
        value = self.constants[name].unsqueeze(0).expand((B,) + tuple(self.constants[name].shape))
        return value, value

    def _maxpool_backward(self, node, coef, pre, in_shape):
        a = node.attrs
        B, K = coef.shape[:2]
        C, H, W = in_shape
        kernel = tuple(a["kernel"])
        stride = tuple(a.get("stride", kernel))
        top, left, bottom, right = tuple(a.get("padding", (0, 0, 0, 0)))
        lo, hi = pre
        pad = (left, right, top, bottom)
        lo_p = F.pad(lo, pad, value=float("-inf")).reshape(B * C, 1, H + top + bottom, W + left + right)
        hi_p = F.pad(hi, pad, value=float("-inf")).reshape(B * C, 1, H + top + bottom, W + left + right)
        lo_patch = F.unfold(lo_p, kernel, stride=stride)  # (B*C, kk, L)
        hi_patch = F.unfold(hi_p, kernel, stride=stride)
        L = lo_patch.shape[-1]
        kk = lo_patch.shape[1]
        # lower line: y >= x_j with j the input of the largest lower bound
        idx_lo = lo_patch.argmax(dim=1, keepdim=True)
        # upper line: y <= a x_k + b with k the input of the largest upper bound [l, u] and
        # o = max of the others' upper bounds; y - a x_k is convex, so its max over the box is
        # at a vertex (the others at their upper bounds): b = max(max(u, o) - a u, max(l, o) - a l).
        # The chord a = (max(u, o) - max(l, o)) / (u - l) makes the two equal and lies below the
        # constant max(u, o) on all of [l, u]; a = 1, b = 0 (exact) when l >= o.
        idx_hi = hi_patch.argmax(dim=1, keepdim=True)
        u, l = hi_patch.gather(1, idx_hi), lo_patch.gather(1, idx_hi)
        o = hi_patch.scatter(1, idx_hi, float("-inf")).amax(dim=1, keepdim=True)
        top_u, top_l = torch.maximum(u, o), torch.maximum(l, o)
        width = u - l
        slope = torch.where(width > 0, (top_u - top_l) / width.clamp_min(1e-300), torch.ones_like(width))
        offset = torch.maximum(top_u - slope * u, top_l - slope * l)  # (B*C, 1, L)
        c = coef.reshape(B, K, C, L)
        pos, neg = c.clamp(min=0), c.clamp(max=0)
        extra = _row_dot(neg, offset.reshape(B, 1, C, L))
        patches = torch.zeros(B, K, C, kk, L, dtype=coef.dtype, device=coef.device)
        patches = patches.scatter_add(3, idx_lo.reshape(B, 1, C, 1, L).expand(B, K, C, 1, L), pos.unsqueeze(3))
        patches = patches.scatter_add(3, idx_hi.reshape(B, 1, C, 1, L).expand(B, K, C, 1, L),
                                      (neg * slope.reshape(B, 1, C, L)).unsqueeze(3))
        Hp, Wp = H + top + bottom, W + left + right
        folded = F.fold(patches.reshape(B * K * C, kk, L), (Hp, Wp), kernel, stride=stride)
        folded = folded.reshape(B, K, C, Hp, Wp)[:, :, :, top:top + H, left:left + W]
        return [(node.inputs[0], folded)], extra


def _expand_per_sample(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, *s) broadcast to (B, *shape) the way numpy broadcasts the per-sample shapes (from the right)."""
    missing = len(shape) - (t.dim() - 1)
    if missing > 0:
        t = t.reshape((t.shape[0],) + (1,) * missing + tuple(t.shape[1:]))
    return t.expand((t.shape[0],) + tuple(shape))


def _sum_to_shape(coef: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """coef (B, K, *out) summed over what broadcasting expanded from the per-sample `shape`."""
    extra = coef.dim() - 2 - len(shape)
    if extra > 0:
        coef = coef.sum(dim=tuple(range(2, 2 + extra)))
    dims = tuple(2 + i for i, (c, s) in enumerate(zip(coef.shape[2:], shape)) if s == 1 and c != 1)
    return coef.sum(dim=dims, keepdim=True) if dims else coef


def _missing_line_bias(coef: torch.Tensor, pos: torch.Tensor, bl: torch.Tensor, bu: torch.Tensor) -> torch.Tensor:
    """A+ . b_l + A- . b_u (B, K) where a line may be missing (intercept -inf / +inf, slope 0): a
    row that needs a missing line (A+ > 0 on b_l = -inf, A- < 0 on b_u = +inf) has no bound (-inf);
    a row that does not (A = 0 there) gets 0 from it, not 0 x inf."""
    B, K = coef.shape[:2]
    neg = coef - pos
    needs = ((pos > 0) & torch.isinf(bl)) | ((neg < 0) & torch.isinf(bu))
    bias = _row_dot(pos, torch.where(torch.isinf(bl), 0.0, bl)) + _row_dot(neg, torch.where(torch.isinf(bu), 0.0, bu))
    return bias.masked_fill(needs.reshape(B, K, -1).any(-1), float("-inf"))


def _row_dot(coef: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """sum over features of coef (B, K, *shape) x vec (B, 1 or K, *shape) -> (B, K), without
    materialising the product when vec is shared by the K rows (one batched matrix-vector product)."""
    B, K = coef.shape[:2]
    if vec.shape[1] == 1 and K > 1:
        return (coef.reshape(B, K, -1) @ vec.reshape(B, -1, 1).expand(B, -1, 1)).squeeze(-1)
    return (coef * vec).reshape(B, K, -1).sum(-1)


def _abs_node(node: Node, keep_sign: bool = False) -> Node:
    """The node's linear part (bias/shift dropped), with |weights| unless keep_sign."""
    params = {}
    for k, v in node.params.items():
        if k in ("bias", "shift") or v is None:
            params[k] = None
        else:
            params[k] = v if keep_sign else v.abs()
    attrs = dict(node.attrs)
    if node.op == "pad":
        attrs["value"] = 0.0  # the padding value is the offset, not part of the linear map
    return Node(node.op, list(node.inputs), node.output, params, attrs, node.name)


def _linear_vjp(node: Node, coef: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """coef @ M for the linear map M of a bias-free node (its exact transpose, via autograd)."""
    B, K = coef.shape[:2]
    with torch.enable_grad():
        x = torch.zeros((B * K,) + in_shape, dtype=coef.dtype, device=coef.device, requires_grad=True)
        y = run_node(node, [x])
        (grad,) = torch.autograd.grad(y, x, coef.reshape((B * K,) + tuple(y.shape[1:])),
                                      create_graph=coef.requires_grad)
    return grad.reshape((B, K) + in_shape)
