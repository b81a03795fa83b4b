"""How much a code says about an image's class, which reconstruction error does not show.
`compare` scores one classifier, fitted on the training images' codes, on the test images' codes,
and likewise on PCA's code of the same width (the best linear code) and on the raw pixels. The
classifiers are batched numpy: `knn5`, a vote of the 5 nearest training codes (Euclidean), and
`ridge`, a closed-form ridge regression to one-hot labels."""

import time

import numpy as np

from autoenc.studies import pca as pca_lib

KNN_BATCH = 500  # test codes per distance matrix: 500 x 60,000 float32 is 120 MB
RIDGE_CHUNK = 10_000  # training codes per float64 step of the normal equations
RIDGE_L2 = 1e-3  # penalty as a fraction of the mean feature variance (scale-free)


def knn_predict(train_codes, train_labels, test_codes, k: int = 5) -> np.ndarray:
    """Labels (M,) of the test codes (M, D) by a vote of their `k` nearest training codes (N, D)
    with integer labels (N,); a tie goes to the tied class with the nearest neighbour."""
    if not 1 <= k <= len(train_codes):
        raise ValueError(f"k must be in 1..{len(train_codes)}, got {k}")
    train = np.asarray(train_codes, np.float32)
    train_norms = np.einsum("ij,ij->i", train, train)
    minus_twice = np.ascontiguousarray(-2.0 * train.T)
    # A vote counts 1 and 2^-(rank + 1): any set of ranks has less than 1 extra, and of two
    # tied classes the one holding the nearer neighbour has the larger extra.
    weights = 1.0 + 0.5 ** np.arange(1, k + 1)
    classes = int(train_labels.max()) + 1
    predictions = []
    for start in range(0, len(test_codes), KNN_BATCH):
        batch = np.asarray(test_codes[start : start + KNN_BATCH], np.float32)
        # |a - b|^2 less |a|^2 (the same for every b), added in place: one batch x N matrix.
        distances = batch @ minus_twice
        distances += train_norms
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        ranks = np.take_along_axis(distances, nearest, axis=1).argsort(axis=1)
        neighbours = train_labels[np.take_along_axis(nearest, ranks, axis=1)]
        votes = np.zeros((len(batch), classes))
        np.add.at(votes, (np.arange(len(batch))[:, None], neighbours), weights)
        predictions.append(votes.argmax(axis=1))
    return np.concatenate(predictions) if predictions else np.zeros(0, np.int64)


def ridge_predict(train_codes, train_labels, test_codes, l2: float = RIDGE_L2) -> np.ndarray:
    """Labels of the test codes by closed-form ridge regression to one-hot labels, summed in float64
    a chunk at a time; the penalty is `l2` times the mean feature variance, so it is scale-free."""
    classes = int(train_labels.max()) + 1
    mean = np.mean(train_codes, axis=0, dtype=np.float64)
    width = train_codes.shape[1]
    gram, cross = np.zeros((width, width)), np.zeros((width, classes))
    for start in range(0, len(train_codes), RIDGE_CHUNK):
        centred = train_codes[start : start + RIDGE_CHUNK].astype(np.float64) - mean
        gram += centred.T @ centred
        cross += centred.T @ np.eye(classes)[train_labels[start : start + RIDGE_CHUNK]]
    penalty = l2 * max(np.trace(gram) / width, np.finfo(float).tiny)
    solution = np.linalg.solve(gram + penalty * np.eye(width), cross)
    # The one-hot mean only shifts every test code's scores alike: the argmax ignores it.
    return ((test_codes.astype(np.float64) - mean) @ solution).argmax(axis=1)


CLASSIFIERS = {"knn5": knn_predict, "ridge": ridge_predict}


def accuracy(classifier: str, train_codes, train_labels, test_codes, test_labels) -> float:
    """The fraction of test codes that `classifier` (a key of `CLASSIFIERS`), fitted on the
    training codes, labels right."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; valid: {', '.join(CLASSIFIERS)}")
    predicted = CLASSIFIERS[classifier](train_codes, np.asarray(train_labels, np.int64), test_codes)
    return float(np.mean(predicted == np.asarray(test_labels)))


def compare(train_codes, test_codes, data, classifier: str = "knn5", pca=None) -> dict:
    """One classifier's test accuracy on a code, on PCA's code of its width, and on the pixels.

    Args:
        train_codes, test_codes: (N, width) and (M, width) codes of `data.x_train`, `data.x_test`.
        data: a `data.FashionMNIST` (its labels and uint8 images).
        classifier: a key of `CLASSIFIERS`.
        pca: a `pca.PCA` fitted on `data.x_train`; None fits it.

    Returns:
        {"code", "pca", "pixels": test accuracies, "classifier", "width", "seconds": the wall
        time of all three}; "pca" is None for a code wider than an image.
    """
    started = time.perf_counter()
    width = train_codes.shape[1]
    result = dict(classifier=classifier, width=width, pca=None)

    def score(train, test):
        return accuracy(classifier, train, data.y_train, test, data.y_test)

    result["code"] = score(train_codes, test_codes)
    if width <= np.prod(data.x_train.shape[1:]):
        pca = pca or pca_lib.fit_pca(data.x_train)
        result["pca"] = score(pca.encode(data.x_train, width), pca.encode(data.x_test, width))
    result["pixels"] = score(pixels(data.x_train), pixels(data.x_test))
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def pixels(images_uint8: np.ndarray) -> np.ndarray:
    """Images as flat float32 rows in [0, 1], the pipeline's scale."""
    return images_uint8.reshape(len(images_uint8), -1).astype(np.float32) / 255.0
