"""The Azure OpenAI dialect: deployments in the path, ``api-version`` in the query, ``api-key``.

Wire format, as documented or observed:

- ``GET /openai/models?api-version=V`` answers ``{"object": "list", "data": [{"id", "object":
  "model", "created_at", "status": "succeeded", "capabilities", "lifecycle_status",
  "deprecation"}]}``; the key goes in the ``api-key`` header:
  https://learn.microsoft.com/en-us/rest/api/azureopenai/models/list (api-version 2024-10-21).
- ``POST /openai/deployments/{deployment}/chat/completions?api-version=V`` takes an OpenAI chat
  body (``model`` optional: the deployment is in the path) and answers an OpenAI chat
  completion: https://learn.microsoft.com/en-us/azure/ai-services/openai/reference.
- ``GET /openai/deployments?api-version=V`` (data-plane deployment list) answers ``{"object":
  "list", "data": [{"id", "model", "owner": "organization-owner", "object": "deployment",
  "status": "succeeded", "created_at", "updated_at", "scale_settings"}]}`` but only on the
  API versions before its retirement; "Last working version: 2023-03-15-preview", "The
  standalone data plane API was retired" (Microsoft employee):
  https://learn.microsoft.com/en-us/answers/questions/1371786/get-azure-openai-deployments-in-api.
  Newer versions get the 404 below.
- Gateway errors are ``{"error": {"code", "message"}}``: 401 ``{"code": "401", "message":
  "Access denied due to invalid subscription key or wrong API endpoint. ..."}``
  (https://github.com/microsoft/genaiscript/issues/781); 404 ``{"code": "404", "message":
  "Resource not found"}`` for a missing api-version or unknown path
  (https://github.com/rusiaaman/chat.md/issues/2); 400 ``{"code": "BadRequest", "message":
  "API version not supported"}`` (https://github.com/openai/codex/issues/3725); 404
  ``DeploymentNotFound`` (https://errornotes.dev/en/errors/ai-tools/fixing-azure-openai-404-resolving-the-deploymentnotfound-error);
  429 ``{"code": "429", "message": "Requests to the ChatCompletions_Create Operation under
  Azure OpenAI API version V have exceeded ... Please retry after N seconds. ..."}``
  (https://github.com/jasonacox/TinyLLM/issues/17) with ``Retry-After`` (and
  ``retry-after-ms``, which the openai SDK prefers).  Errors raised by the model behind the
  deployment (bad body, reasoning-model parameters) keep OpenAI's shape, as Azure passes them
  through.
"""

from __future__ import annotations

import time
from typing import ClassVar

from aiohttp import web

from tests.fakes.dialects.base import Dialect, json_object
from tests.fakes.dialects.openai import OpenAIDialect, openai_error

__all__ = ["DEPLOYMENTS_LIST_VERSIONS", "AzureOpenAIDialect", "azure_error"]

#: API versions that still answer the data-plane ``GET /openai/deployments``.
DEPLOYMENTS_LIST_VERSIONS = frozenset(
    {"2022-12-01", "2022-06-01-preview", "2023-03-15-preview", "2022-03-01-preview"}
)

_GA_VERSIONS = ("2022-12-01", "2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21")
_PREVIEW_VERSIONS = (
    "2022-03-01-preview",
    "2022-06-01-preview",
    "2023-03-15-preview",
    "2024-02-15-preview",
    "2024-05-01-preview",
    "2024-08-01-preview",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-03-01-preview",
    "2025-04-01-preview",
)

_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment "
    "within the last 5 minutes, please wait a moment and try again."
)
# Operation names Azure quotes in rate-limit messages, by the last path segment.
_OPERATIONS = {"completions": "ChatCompletions_Create", "models": "Models_List"}


def azure_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """A gateway error in Azure's shape: ``{"error": {"code", "message"}}``."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def _not_found() -> web.Response:
    return azure_error(404, "404", "Resource not found")


class AzureOpenAIDialect(OpenAIDialect):
    """Azure OpenAI's data-plane inference API; the models served are the deployment names.

    ``versions`` restricts the accepted ``api-version`` values (default: the GA and preview
    versions listed in this module).  Reasoning-model rules apply by deployment name.
    """

    dialect: ClassVar[Dialect] = Dialect.AZURE_OPENAI
    api_prefix: ClassVar[str] = "/openai/"
    default_versions: ClassVar[tuple[str, ...]] = _GA_VERSIONS + _PREVIEW_VERSIONS

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/openai/models", self.handle_models)
        router.add_get("/openai/deployments", self.handle_deployments)
        router.add_post(
            "/openai/deployments/{deployment}/chat/completions", self.handle_deployment_chat
        )

    def admit(self, request: web.Request) -> web.Response | None:
        # A Bearer header would have to carry an Entra ID token; the key only works as api-key.
        if self.api_key is not None and request.headers.get("api-key") != self.api_key:
            return azure_error(401, "401", _DENIED)
        version = request.query.get("api-version")
        if not version:
            return _not_found()
        if version not in self.versions:
            return azure_error(400, "BadRequest", "API version not supported")
        return None

    async def handle_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {
                "id": model,
                "object": "model",
                "created_at": created,
                "status": "succeeded",
                "capabilities": {
                    "chat_completion": True,
                    "completion": False,
                    "embeddings": False,
                    "fine_tune": False,
                    "inference": True,
                },
                "lifecycle_status": "generally-available",
                "deprecation": {"inference": created + 365 * 86400},
            }
            for model in self.source.served_models()
        ]
        return web.json_response({"object": "list", "data": data})

    async def handle_deployments(self, request: web.Request) -> web.Response:
        if request.query["api-version"] not in DEPLOYMENTS_LIST_VERSIONS:
            return _not_found()  # retired from the data plane after 2023-03-15-preview
        created = int(time.time())
        data = [
            {
                "id": deployment,
                "model": deployment,
                "owner": "organization-owner",
                "object": "deployment",
                "status": "succeeded",
                "created_at": created,
                "updated_at": created,
                "scale_settings": {"scale_type": "standard"},
            }
            for deployment in self.source.served_models()
        ]
        return web.json_response({"object": "list", "data": data})

    async def handle_deployment_chat(self, request: web.Request) -> web.Response:
        deployment = request.match_info["deployment"]
        if deployment not in self.source.served_models():
            return azure_error(404, "DeploymentNotFound", _NO_DEPLOYMENT)
        body = await json_object(request)
        if isinstance(body, str):
            return openai_error(400, body, "invalid_request_error", None)
        rejected = self.check_messages(body) or self.check_parameters(deployment, body)
        return rejected or self.completion(deployment, body["messages"])

    # -- faults --------------------------------------------------------------------------

    def outage(self, request: web.Request, message: str | None = None) -> web.Response:
        return azure_error(
            503,
            "ServiceUnavailable",
            message or "The service is temporarily unable to process your request (injected).",
        )

    def server_error(self, request: web.Request) -> web.Response:
        return azure_error(
            500, "InternalServerError", "The server had an error while processing your request."
        )

    def rate_limited(self, request: web.Request, retry_after: int) -> web.Response:
        operation = _OPERATIONS.get(request.path.rsplit("/", 1)[-1], "Request")
        version = request.query.get("api-version", "")
        return azure_error(
            429,
            "429",
            f"Requests to the {operation} Operation under Azure OpenAI API version {version} "
            "have exceeded call rate limit of your current OpenAI S0 pricing tier. Please "
            f"retry after {retry_after} seconds. Please go here: https://aka.ms/oai/quotaincrease "
            "if you would like to further increase the default rate limit.",
            headers={"Retry-After": str(retry_after), "retry-after-ms": str(retry_after * 1000)},
        )

    def unknown_route(self, request: web.Request) -> web.Response:
        return _not_found()
