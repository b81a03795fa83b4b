"""The chapter's two open questions as studies (`studies/compression.py`, `studies/denoising.py`):
non-learned baselines (`baselines`: PCA and scikit-image's classical denoisers), the two
sweeps (`compression`, `denoising`), the cache of finished points (`points`) and the figures
(`figures`). The training library does not import this package."""
