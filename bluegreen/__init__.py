"""The launcher: the `bluegreen` CLI, the local stack and the demo.

The only package that imports more than one part (`model_server`, `router`,
`controller`): it composes them; the parts never import each other.
"""
