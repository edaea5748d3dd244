"""Self-tests for tests/fakes/embeddings.py: real all-MiniLM-L6-v2 vectors, through the real
openai SDK.

The reference figures are the ones sentence-transformers' documentation prints for this model
(its quickstart's similarity matrix and its semantic-search example's scores, 4 decimals): a
forward pass that is off anywhere (a transposed weight, the wrong GELU, padding that leaks into
the mean) moves them by more than that.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import numpy as np
import openai
import pytest

from tests.fakes.embeddings import DIMENSIONS, MAX_TOKENS, MODEL, FakeEmbeddings, minilm


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddings]:
    async with FakeEmbeddings() as server:
        yield server


@pytest.fixture
async def client(fake: FakeEmbeddings) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=30)
    yield sdk
    await sdk.close()


async def vectors(client: openai.AsyncOpenAI, texts: list[str]) -> np.ndarray:
    response = await client.embeddings.create(model=MODEL, input=texts)
    return np.array([item.embedding for item in response.data], dtype=np.float64)


async def test_the_quickstart_similarities_of_sentence_transformers(
    client: openai.AsyncOpenAI,
) -> None:
    found = await vectors(
        client,
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
    )
    assert found.shape == (3, DIMENSIONS)
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
    similarities = found @ found.T
    expected = [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]]
    assert np.allclose(similarities, expected, atol=6e-4), similarities.round(4)


async def test_the_semantic_search_scores_of_sentence_transformers(
    client: openai.AsyncOpenAI,
) -> None:
    corpus = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "A man is riding a white horse on an enclosed ground.",
        "A cheetah is running behind its prey.",
    ]
    found = await vectors(client, ["A man is eating pasta.", *corpus])
    scores = found[1:] @ found[0]
    assert np.allclose(scores, [0.7035, 0.5272, 0.1889, 0.1047, 0.0980], atol=6e-4), scores
    food, bread = found[1], found[2]
    assert food @ bread > 0.7  # 0.755
    unrelated = await vectors(client, ["The plumber quoted a price for the boiler."])
    assert abs(float(unrelated[0] @ food)) < 0.2


async def test_base64_and_float_encodings_carry_the_same_float32_numbers(
    fake: FakeEmbeddings, client: openai.AsyncOpenAI
) -> None:
    default = await client.embeddings.create(model=MODEL, input="Marie gets married in June.")
    assert fake.calls[-1]["encoding_format"] == "base64"  # what the SDK asks for by default
    floats = await client.embeddings.create(
        model=MODEL, input="Marie gets married in June.", encoding_format="float"
    )
    assert default.data[0].embedding == floats.data[0].embedding
    assert default.model == MODEL
    assert default.usage.prompt_tokens == 8  # [CLS] marie gets married in june . [SEP]


async def test_the_raw_base64_answer_is_little_endian_float32(fake: FakeEmbeddings) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake.base_url}/embeddings",
            json={"model": "any-name", "input": ["a", "b"], "encoding_format": "base64"},
        ) as response,
    ):
        body = await response.json()
    assert body["object"] == "list" and body["model"] == "any-name"
    assert [item["index"] for item in body["data"]] == [0, 1]
    first = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert first.shape == (DIMENSIONS,)
    assert np.allclose(first, minilm().encode(["a"])[0], atol=1e-6)  # batched or alone


def test_a_text_has_the_same_vector_alone_or_batched_with_longer_ones() -> None:
    model = minilm()
    short = "Yes, the blue one."
    batch = model.encode(
        [short, "A much longer message about the sofa, the velvet, the shop and the delivery."]
    )
    alone = model.encode([short])[0]
    assert np.abs(batch[0] - alone).max() < 1e-5  # padding never leaks into the mean


def test_inputs_are_cut_to_256_tokens() -> None:
    model = minilm()
    long = "word " * 1000
    assert len(model.token_ids([long])[0]) == MAX_TOKENS
    cut = "word " * (MAX_TOKENS - 2)  # + [CLS] and [SEP]
    assert np.abs(model.encode([long])[0] - model.encode([cut])[0]).max() < 1e-6


async def test_each_text_is_computed_once(fake: FakeEmbeddings, client: openai.AsyncOpenAI) -> None:
    await vectors(client, ["one", "two", "one"])
    await vectors(client, ["two"])
    assert fake.texts_embedded == 2


async def test_bad_requests_and_failures_in_openai_shapes(
    fake: FakeEmbeddings, client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model=MODEL, input=[""])
    fake.fail_next("500")
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model=MODEL, input="hello")
    fake.fail_next("hang")
    with pytest.raises(openai.APITimeoutError):
        await client.embeddings.create(model=MODEL, input="hello", timeout=0.2)
    assert len((await vectors(client, ["hello"]))[0]) == DIMENSIONS  # then answers again
