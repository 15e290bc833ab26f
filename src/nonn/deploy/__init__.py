"""Run a NoNN as K node processes plus a gateway on this machine, and measure it end to end.

`deploy_local(run_dir)` is what `nonn deploy-local` calls; the process management in
`processes` and `cluster` is shared with `nonn bench-edge`.
"""
