"""The credential-pair tier: RFC 9497 VOPRF over username-hash buckets (``credcheck-pairs-v1``).

Its public modules: :mod:`.build` (``build_pairs``, ``PairPlan``, ``PairBuildReport``), :mod:`.checker` (the
pair-checker contract and every pair checker), :mod:`.keys` (``KeyPair``, ``load_key``, ``write_key``),
:mod:`.store` (``PairStore``) and :mod:`.stretch` (``Stretch`` and its named profiles). ``credcheck.open_pairs``
and ``credcheck.build_pairs`` are the usual doors. The rest (``_``-named) may change at any release. Needs the
``pairs`` extra (pysodium and the system libsodium), imported on first use.
"""

# Each submodule is imported by its own name, so that importing the package imports no extra.
__all__: list[str] = []
