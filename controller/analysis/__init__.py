"""Release analysis: the shadow gate before the flip and the bake after it.

`checks` holds the pure verdicts, `windows` the measuring loops over the traffic probes,
`analyzer` what the engine calls (`TrafficAnalysis`, or the `NoAnalysis` null object).
The vocabulary (policy, results) is in `controller.domain.analysis`.
"""
