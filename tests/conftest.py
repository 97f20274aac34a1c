import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# One spec per family and a few compositions; every test that loops over "all schedules" uses these.
FAMILY_SPECS = [
    "constant(value=0.5, warmup=5)",
    "linear(peak=1.0, final=0.1, warmup=5)",
    "cosine(peak=1.0, final=0.1, warmup=5)",
    "sgdr(peak=1.0, period=7, mult=2, final=0.05, warmup=3)",
    "step(peak=1.0, every=9, factor=0.5)",
    "multistep(peak=1.0, milestones=['50%', 45], factor=0.3, warmup=4)",
    "exponential(peak=1.0, factor=0.97)",
    "exponential(peak=1.0, final=0.01, warmup=5)",
    "polynomial(peak=1.0, final=0.05, power=2.0, warmup=5)",
    "inverse_sqrt(peak=1.0, warmup=8)",
    "onecycle(peak=1.0, warmup='25%')",
    "onecycle(peak=1.0, warmup='20%', shape='linear', three_phase=True)",
    "cyclic(low=0.1, peak=1.0, up=6, down=4, mode='triangular2')",
    "wsd(peak=1.0, warmup=5, decay='20%', shape='1-sqrt')",
    "wsd(peak=1.0, warmup=5, decay=15, final=0.01, shape='exp')",
    "rex(peak=1.0, final=0.0, warmup=5)",
    "power(peak=0.5, a=2.0, b=-0.5, warmup=4, decay='10%', per='st')",
    "infinite(peak=1.0, constant=0.3, final=0.01, warmup=5, cooldown='20%', anneal='10%')",
    "piecewise(points=[[0, 0.0], [5, 1.0], ['50%', 0.6], [59, 0.01]])",
]
COMPOSED_SPECS = [
    "join(linear(peak=1.0, final=0.5), cosine(peak=0.5, final=0.0), at=['40%'])",
    "warmup(cosine(peak=1.0, final=0.1), duration=6, shape='cosine', start=0.1)",
    "scale(cosine(peak=1.0), by=cyclic(low=0.5, peak=1.0, up=5))",
    "clip(sgdr(peak=1.0, period=10), floor=0.2, ceiling=0.9)",
    "decay_from(wsd(peak=1.0, decay='10%'), at=30, duration=20, final=0.05, shape='cosine')",
    "rewarm(cosine(peak=1.0, final=0.1), wsd(peak=0.6, decay='30%'), at=25, warmup=5)",
    "replanned(cosine(peak=1.0, final=0.1, warmup=5), totals=[[0, 40], [20, 60, 'stretch']])",
]
ALL_SPECS = FAMILY_SPECS + COMPOSED_SPECS
TOTAL = 60  # run length used with ALL_SPECS
