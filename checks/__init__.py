"""Host probes, one module per area. Each is a small function registered with
`doctor.registry.check`; it reads only `ctx.facts` and returns a Verdict."""
