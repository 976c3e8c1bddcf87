"""The generator's tables: every element a prototype recipe can draw has its radius."""

from __future__ import annotations

from fmpretrain import prototypes as P


def test_pools_have_radii():
    """Every element a recipe can draw has a tabulated radius for its role."""
    for recipes in (
        P.ROCKSALT, P.FLUORITE, P.ANTIFLUORITE, P.RUTILE, P.LAYERED_1T,
        P.LAYERED_2H, (P.CSCL_IONIC,),
    ):  # fmt: skip
        for cations, anions in recipes:
            assert all(c in P.CATIONS for c in cations)
            assert all(a in P.ANIONS for a in anions)
    for recipes in (P.PEROVSKITE, P.SPINEL):
        for a_pool, b_pool, x_pool in recipes:
            assert all(c in P.CATIONS for c in a_pool + b_pool)
            assert all(x in P.ANIONS for x in x_pool)
    metals = (
        P.FCC_METALS + P.BCC_METALS + P.HCP_METALS + P.L12_A + P.L12_B
        + P.HEUSLER_X + P.HEUSLER_Y + P.HEUSLER_Z + P.CSCL_METAL_A
        + P.CSCL_METAL_B + sum(P.ALLOY_POOLS.values(), ())
    )  # fmt: skip
    assert all(m in P.METALLIC for m in metals)
