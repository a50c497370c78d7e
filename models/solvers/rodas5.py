"""Rodas5: Di Marzo's 8-stage, order 5(4), stiffly accurate, L-stable Rosenbrock method.

Coefficients from G. A. Di Marzo, "RODAS5(4): Méthodes de Rosenbrock d'ordre 5(4) adaptées aux
problèmes différentiels-algébriques", MSc thesis, Geneva 1993, in the transformed form used by
Hairer's RODAS and OrdinaryDiffEq.jl. Stages 7 and 8 continue from the previous stage state
(A[6] = A[5] + e_6, A[7] = A[6] + e_7), the new state is stage 8's plus k_8, and the error
estimate is k_8.
"""

import numpy as np

from .rosenbrock import RosenbrockTableau, make_rosenbrock_advance

_a = [
    [],
    [2.0],
    [3.040894194418781, 1.041747909077569],
    [2.576417536461461, 1.622083060776640, -0.9089668560264532],
    [2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443],
    [-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405, 24.13215229196062],
]
_a.append(_a[5] + [1.0])
_a.append(_a[6] + [1.0])
_c = [
    [],
    [-10.31323885133993],
    [-21.04823117650003, -7.234992135176716],
    [32.22751541853323, -4.943732386540191, 19.44922031041879],
    [-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146],
    [-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906, 318.3822534212147],
    [34.20013733472935, -14.15535402717690, 57.82335640988400, 25.83362985412365, 1.408950972071624,
     -6.551835421242162],
    [42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503, -31.58359187223370,
     -6.685968952921985, -5.810979938412932],
]


def _lower(rows):
    out = np.zeros((len(rows), len(rows)))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


TABLEAU = RosenbrockTableau(
    name="rodas5",
    gamma=0.19,
    A=_lower(_a),
    C=_lower(_c),
    B=np.array(_a[7] + [1.0]),
    E=np.array([0.0] * 7 + [1.0]),
    order=5,
)


def make_advance(fn, n_states, n_theta, key):
    """Build the Rodas5 segment integrator for one model's generated functions ``fn``."""
    return make_rosenbrock_advance(TABLEAU, fn, n_states, n_theta, key)
