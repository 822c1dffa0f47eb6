"""Where live traffic goes: the `TrafficRouter` protocol and its backends."""
