"""The chapter's two open questions as studies, each one command:

    python -m autoenc.studies.compression --output_dir=DIR   # autoencoders vs PCA per code width
    python -m autoenc.studies.denoising --output_dir=DIR     # denoisers vs classical filters

`compression` and `denoising` are the sweeps and their command lines; `learned` resolves the
denoisers a study scores (configs it trains, workdirs trained elsewhere); `pca` and `classical`
are the non-learned baselines; `points` caches finished points and scores images; `figures`
draws the results and `report` writes them. Only `classical` needs the studies extra
(`pip install -e '.[studies]'`); of this package the library imports only `pca`, for
`autoenc.probe`'s baseline.

Importing the package sets the process up as `launch.py` does (oneDNN kernels, one malloc
arena), which takes effect only before TensorFlow starts, so that the models a study trains run
with the kernels of `launch.py`.
"""

import os

from autoenc.command_line import configure_process

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
configure_process()
