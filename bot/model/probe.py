"""Asking the model server for its models: the one check behind start-up's warning line and
`mnemo health`. Each presents the same answer its own way: start-up warns and goes on (a
server may come up after the bot), health fails on a server that does not answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import openai

from bot.config import Settings, is_openai
from bot.model.llm import MODELS_CHECK_TIMEOUT_SECONDS, LLMClient, connection_cause, server_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerAnswer:
    """What `GET /models` came to: a list of models, or why there was none."""

    listed: list[str] | None = None  # the models listed; None when there was no list
    status: int | None = None  # the HTTP status the server refused with
    message: str = ""  # the server's message with that status
    timed_out: bool = False
    unreachable: str | None = None  # why it could not be reached (the innermost cause)
    failure: str | None = None  # anything else that went wrong


async def ask_for_models(llm: LLMClient) -> ServerAnswer:
    """One quick `GET /models` without retries (MODELS_CHECK_TIMEOUT_SECONDS); never raises."""
    try:
        return ServerAnswer(listed=await llm.list_models())
    except openai.APIStatusError as error:
        return ServerAnswer(status=error.status_code, message=server_message(error))
    except openai.APITimeoutError:
        return ServerAnswer(timed_out=True)
    except openai.APIConnectionError as error:
        return ServerAnswer(unreachable=connection_cause(error))
    except (openai.OpenAIError, OSError, ValueError) as error:
        return ServerAnswer(failure=repr(error))


async def check_model_server(llm: LLMClient, settings: Settings) -> None:
    """At start-up: one warning line if the URL looks wrong or the models are not listed.

    Never raises: a server that does not list its models may still answer.
    """
    problems = _url_problems(settings.openai_base_url)
    answer = await ask_for_models(llm)
    if answer.status is not None:
        problems.append(f"GET /models answered HTTP {answer.status}: {answer.message}")
    elif answer.timed_out:
        problems.append(f"no answer to GET /models within {MODELS_CHECK_TIMEOUT_SECONDS:.0f} s")
    elif answer.unreachable is not None:
        problems.append(f"cannot connect ({answer.unreachable})")
    elif answer.failure is not None:
        problems.append(f"GET /models failed: {answer.failure}")
    elif answer.listed:
        models = (settings.chat_model, settings.memory_model)
        missing = [model for model in dict.fromkeys(models) if model not in answer.listed]
        if missing:
            listed = answer.listed
            shown = ", ".join(listed[:10]) + (" …" if len(listed) > 10 else "")
            problems.append(f"model(s) {', '.join(missing)} not in the server's list ({shown})")
    if problems:
        # One line, and start-up goes on: the server may come up after the bot (a compose
        # file's Ollama), and until it answers each reply says it cannot reach the model.
        log.warning(
            "Model server %s: %s; check OPENAI_BASE_URL, CHAT_MODEL and MEMORY_MODEL"
            " (Mnemo starts anyway; replies fail until the server answers)",
            llm.base_url,
            "; ".join(problems),
        )


def health_problem(answer: ServerAnswer, url: str) -> str | None:
    """For `mnemo health`: None when the server answers (a 404 is a server that answers but
    does not list its models), else what is wrong in a few words."""
    if answer.status is not None:
        return None if answer.status == 404 else f"answered GET /models with HTTP {answer.status}"
    if answer.timed_out:
        return f"no answer within {MODELS_CHECK_TIMEOUT_SECONDS:.0f} s"
    if answer.unreachable is not None:
        return f"cannot connect to {url} ({answer.unreachable})"
    return answer.failure and f"GET /models failed: {answer.failure}"


def _url_problems(base_url: str | None) -> list[str]:
    if base_url is None:
        return []
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ["OPENAI_BASE_URL needs a scheme and a host, like http://localhost:11434/v1"]
    if not is_openai(base_url) and "/v1" not in parts.path:
        return ["OPENAI_BASE_URL has no /v1 (OpenAI-compatible servers serve under /v1)"]
    return []
