"""Body models that turn pose parameters into a mesh.

- :mod:`stmt.body.smpl`: SMPL+H / SMPL-X from the user's own model files
  (``--body-models DIR`` or ``$STMT_BODY_MODELS``) and fast linear blend
  skinning of a vertex subset.
- :mod:`stmt.body.anny`: the free anny body (ships its data, runs offline).

Nothing is imported here, so ``import stmt.body.smpl`` does not pull in anny
and neither pulls in torch until something is posed.
"""
