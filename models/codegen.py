"""Code generation: a model's right-hand side -> sympy -> exact Jacobians -> numba source.

From :class:`~models.spec.OdeModel` we derive, symbolically, f(t, y, theta), df/dy, df/dtheta,
y0(theta) and dy0/dtheta, simplify them with common-subexpression elimination and print them as
numba functions: the ones the registered solver methods need (``solvers.registry``), including
the second-derivative term d/dy (J S + P) . v of Rosenbrock sensitivities. ``solvers.kernel``
builds the solver kernels around them.

The module is written to a cache folder under a name that hashes the model's generated code and
the solvers' source, so numba's on-disk cache can never serve code of an older model or solver.
"""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import sympy

from .spec import MathNamespace, ModelError, OdeModel

# Names of the generated functions' own arguments, loop variables and builtins (see generate_source),
# and the forms of their helper variables (_c0, _v0, J_0_1, P_0_1).
_GENERATED = {"t", "y", "th", "dy", "J", "Jp", "S", "dS", "D", "v", "y0", "S0", "active", "math", "j",
              "range"}
_HELPER = re.compile(r"_.*|[JP]_\d+_\d+")


def _symbol_name(name: str, positional: str) -> str:
    """Return ``name`` if the generated code can use it as a variable, else ``positional``."""
    usable = (name.isidentifier() and not keyword.iskeyword(name) and name not in _GENERATED
              and not _HELPER.fullmatch(name))
    return name if usable else positional


@dataclass(frozen=True)
class Symbolic:
    """The model in sympy form: right-hand side, Jacobians, initial state and its Jacobian."""

    states: list[sympy.Symbol]
    theta: list[sympy.Symbol]
    f: sympy.Matrix
    jac_y: sympy.Matrix
    jac_theta: sympy.Matrix
    y0: sympy.Matrix
    y0_jac: sympy.Matrix


def symbolic(model: OdeModel) -> Symbolic:
    """Evaluate the model on sympy symbols and differentiate it.

    A symbol carries the model's own name where the generated code can use it as a variable (the
    code reads as the equations); a name the generated functions use themselves (``t``, ``y``,
    ``S``, ``J``, ``th``, ``math`` ...) or one that is not a plain identifier gets a positional
    name instead (``_s0`` for a state, ``_p0`` for a parameter or input), so any name works.
    """
    states = [sympy.Symbol(_symbol_name(n, f"_s{i}"), real=True) for i, n in enumerate(model.state_names)]
    theta = [sympy.Symbol(_symbol_name(n, f"_p{k}"), real=True) for k, n in enumerate(model.theta_names)]
    n_p = len(model.parameters)
    s = SimpleNamespace(**dict(zip(model.state_names, states, strict=True)))
    p = SimpleNamespace(**dict(zip(model.parameter_names, theta[:n_p], strict=True)))
    u = SimpleNamespace(**dict(zip(model.input_names, theta[n_p:], strict=True)))
    m = MathNamespace(sympy)
    rhs = model.rhs(s, p, u, m)
    init = model.initial(p, u, m)
    f = sympy.Matrix([sympy.sympify(rhs[n]) for n in model.state_names])
    y0 = sympy.Matrix([sympy.sympify(init[n]) for n in model.state_names])
    unknown = (f.free_symbols | y0.free_symbols) - set(states) - set(theta)
    if unknown:
        raise ModelError(f"model {model.name}: unknown names in equations: {sorted(map(str, unknown))}")
    return Symbolic(states, theta, f, f.jacobian(states), f.jacobian(theta), y0, y0.jacobian(theta))


def _body(outputs: list[tuple[str, sympy.Expr]], indent: str = "    ") -> list[str]:
    """Print ``target = expression`` lines after common-subexpression elimination."""
    if not outputs:
        return []
    replacements, reduced = sympy.cse([e for _, e in outputs], symbols=sympy.numbered_symbols("_c"))
    lines = [f"{indent}{sym} = {sympy.pycode(expr)}" for sym, expr in replacements]
    lines += [
        f"{indent}{target} = {sympy.pycode(expr)}" for (target, _), expr in zip(outputs, reduced, strict=True)
    ]
    return lines


def _unpack(symbols: list[sympy.Symbol], names: tuple[str, ...], array: str, used: set) -> list[str]:
    pairs = enumerate(zip(symbols, names, strict=True))
    return [f"    {x} = {array}[{i}]" + (f"  # {name}" if x.name != name else "")
            for i, (x, name) in pairs if x in used]


def generate_source(model: OdeModel) -> str:
    """Return the Python source of the model's numba module.

    The module defines ``N_STATES``, ``N_THETA`` and those of ``rhs``, ``jac``, ``jac_theta``,
    ``sens_rhs``, ``sens_jac_dir``, ``square_product``, ``initial`` and ``initial_jac`` that a
    registered method needs.
    """
    sym = symbolic(model)
    n, q = len(sym.states), len(sym.theta)

    def header(name: str, args: str, exprs) -> list[str]:
        used = set().union(*(sympy.sympify(e).free_symbols for e in exprs)) if exprs else set()
        return [
            f"def {name}({args}):",
            *_unpack(sym.states, model.state_names, "y", used),
            *_unpack(sym.theta, model.theta_names, "th", used),
        ]

    lines = [
        f"# Generated by cytokine-balance from model {model.name!r}. Do not edit.",
        "import math",
        "",
        "from models.solvers.common import compile_kernel",
        "",
        f"N_STATES = {n}",
        f"N_THETA = {q}",
        "",
    ]
    from .solvers.registry import generated_functions  # here: models.solvers imports this module

    wanted = generated_functions()
    pieces = {}
    f_out = [(f"dy[{i}]", sym.f[i]) for i in range(n)]
    pieces["rhs"] = header("rhs", "t, y, th, dy", list(sym.f)) + _body(f_out)

    jac_nz = [(i, k) for i in range(n) for k in range(n) if sym.jac_y[i, k] != 0]
    jp_nz = [(i, k) for i in range(n) for k in range(q) if sym.jac_theta[i, k] != 0]
    pieces["jac"] = header("jac", "t, y, th, J", [sym.jac_y[i, k] for i, k in jac_nz])
    pieces["jac"] += ["    J[:, :] = 0.0"] + _body([(f"J[{i}, {k}]", sym.jac_y[i, k]) for i, k in jac_nz])
    # active[k] is 0 once an event has set theta[k] (see models.solvers.common.make_driver).
    lines_p = header("jac_theta", "t, y, th, active, Jp", [sym.jac_theta[i, k] for i, k in jp_nz])
    lines_p += ["    Jp[:, :] = 0.0"]
    lines_p += _body([(f"Jp[{i}, {k}]", sym.jac_theta[i, k]) for i, k in jp_nz])
    lines_p += [f"    for k in range({q}):", "        for i in range(" + str(n) + "):",
                "            Jp[i, k] *= active[k]"]
    pieces["jac_theta"] = lines_p

    # dS/dt = J S + Jp, printed with J's sparsity (the cheapest form for the explicit method).
    sens_exprs = [(f"J_{i}_{k}", sym.jac_y[i, k]) for i, k in jac_nz]
    sens_exprs += [(f"P_{i}_{k}", sym.jac_theta[i, k]) for i, k in jp_nz]
    pieces["sens_rhs"] = header("sens_rhs", "t, y, th, active, S, dS", [e for _, e in sens_exprs])
    pieces["sens_rhs"] += _body(sens_exprs) + _product_rows(n, jac_nz, jp_nz, "J", "P", "S", "dS")

    # D = d/dy (J S + P) . v: the directional derivative of dS/dt in y (second derivatives of f).
    v = [sympy.Symbol(f"_v{i}", real=True) for i in range(n)]

    def along_v(e):
        return sum(sympy.diff(e, x) * vi for x, vi in zip(sym.states, v, strict=True))

    jac_v, jp_v = sym.jac_y.applyfunc(along_v), sym.jac_theta.applyfunc(along_v)
    jv_nz = [(i, k) for i in range(n) for k in range(n) if jac_v[i, k] != 0]
    pv_nz = [(i, k) for i in range(n) for k in range(q) if jp_v[i, k] != 0]
    dir_exprs = [(f"J_{i}_{k}", jac_v[i, k]) for i, k in jv_nz]
    dir_exprs += [(f"P_{i}_{k}", jp_v[i, k]) for i, k in pv_nz]
    used = set().union(*(e.free_symbols for _, e in dir_exprs)) if dir_exprs else set()
    pieces["sens_jac_dir"] = header("sens_jac_dir", "y, th, active, S, v, D", [e for _, e in dir_exprs])
    pieces["sens_jac_dir"] += [f"    _v{i} = v[{i}]" for i in range(n) if v[i] in used]
    pieces["sens_jac_dir"] += _body(dir_exprs) + _product_rows(n, jv_nz, pv_nz, "J", "P", "S", "D")

    # out = A X for an n x n matrix A (a Rosenbrock step's inverse stage matrix) and any n x k X,
    # A's entries loaded once and each row one loop over X's columns with its n terms written out:
    # LLVM vectorises those (measured: 2-4x faster than a triangular solve per column).
    pieces["square_product"] = ["def square_product(A, X, out):"]
    pieces["square_product"] += [f"    _a{i}_{k} = A[{i}, {k}]" for i in range(n) for k in range(n)]
    for i in range(n):
        terms = " + ".join(f"_a{i}_{k} * X[{k}, j]" for k in range(n))
        pieces["square_product"] += ["    for j in range(X.shape[1]):", f"        out[{i}, j] = {terms}"]

    pieces["initial"] = header("initial", "th, y0", list(sym.y0))
    pieces["initial"] += _body([(f"y0[{i}]", sym.y0[i]) for i in range(n)])
    y0_nz = [(i, k) for i in range(n) for k in range(q) if sym.y0_jac[i, k] != 0]
    pieces["initial_jac"] = header("initial_jac", "th, S0", [sym.y0_jac[i, k] for i, k in y0_nz])
    pieces["initial_jac"] += ["    S0[:, :] = 0.0"]
    pieces["initial_jac"] += _body([(f"S0[{i}, {k}]", sym.y0_jac[i, k]) for i, k in y0_nz])

    for name in wanted:
        lines += pieces[name] + ["", ""]
    lines += [f'{f} = compile_kernel({f}, f"{{__name__}}.{f}")' for f in wanted]
    lines += [""]
    return "\n".join(lines)


def _product_rows(n, jac_nz, p_nz, jac_name, p_name, source, target) -> list[str]:
    """Print ``target = J source + P * active`` from the scalars J_i_k and P_i_k, by rows.

    One loop per row, over a length known only at run time: LLVM vectorises that loop, but
    neither one that writes several rows nor one of fewer than 16 iterations known at compile
    time (measured: 25% less time per call for the reference model).
    """
    lines = []
    for i in range(n):
        terms = [f"{jac_name}_{i}_{k} * {source}[{k}, j]" for (r, k) in jac_nz if r == i]
        lines += [f"    for j in range({source}.shape[1]):",
                  f"        {target}[{i}, j] = {' + '.join(terms) or '0.0'}"]
    lines += [f"    {target}[{i}, {k}] += {p_name}_{i}_{k} * active[{k}]" for i, k in p_nz]
    return lines


def cache_dir() -> Path:
    """Folder of generated modules: ``$CYTOKINE_BALANCE_CACHE`` or ``~/.cache/cytokine-balance``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cytokine-balance"
    return Path(os.environ.get("CYTOKINE_BALANCE_CACHE", default))


def source_hash(model: OdeModel) -> str:
    """Hash of the generated model code and the solver code: the identity of compiled kernels."""
    digest = hashlib.sha256(generate_source(model).encode())
    here = Path(__file__).parent
    for path in [here / "codegen.py", *sorted((here / "solvers").glob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


_LOADED: dict[OdeModel, ModuleType] = {}


def compile_model(model: OdeModel) -> ModuleType:
    """Generate, write (atomically) and import the model's numba module; cached per process."""
    if model in _LOADED:
        return _LOADED[model]
    key = f"{model.name}_{source_hash(model)}"
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cb_{key}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(generate_source(model))
        os.replace(tmp, path)
    module_name = path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    module.SOURCE_HASH = key
    _LOADED[model] = module
    return module
