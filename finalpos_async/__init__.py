"""finalpos: the async-first Python SDK for the Final POS REST API.

This module is also the package's composition root: it gives the client (`_endpoint.py`) the
factory of the embedded sandbox's endpoint, so that `sandbox=True` works while the client's
modules never import the sandbox (which is built on the client).
"""

import importlib
from typing import TYPE_CHECKING, Any

from . import _endpoint
from . import types as _models_pkg  # itself lazy: no model is built until one is used
from ._version import __version__

if TYPE_CHECKING:
    from ._client import AsyncFinalPOS
    from ._exceptions import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ClientClosedError,
        ConflictError,
        FinalPOSError,
        InternalServerError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        RateLimiterUnavailable,
        ResponseValidationError,
        UnprocessableEntityError,
    )
    from ._field_error import FieldError
    from ._limiter import Limiter
    from ._middleware import CallNext, Middleware
    from ._model import Model
    from ._pagination import AsyncPaginator, Page
    from ._rate_limit import RateLimiter
    from ._redis_limit import RedisRateLimiter, tenant_key
    from ._request import Request
    from ._resource import raw_twin
    from ._response import RawResponse
    from ._retry import FailureKind, RetryBudget, RetryPolicy
    from ._secret import HeaderSecret, Secret
    from ._transport import (
        AiohttpTransport,
        MockTransport,
        Transport,
        TransportError,
        TransportResponse,
    )
    from ._types import NOT_GIVEN, NotGiven, RequestOptions
    from ._urls import encode_path_param
    from .types import (
        Account,
        Address,
        Attachment,
        Category,
        CreateAccount,
        CreateAttachment,
        CreateCategory,
        CreateCustomer,
        CreateCustomTableRow,
        CreateOrder,
        CreateOutlet,
        CreateProduct,
        CreateRefund,
        CreateRole,
        CreateSession,
        CreateStation,
        CreateTransaction,
        CreateVariant,
        CreateZapierTrigger,
        Customer,
        CustomTableRow,
        DeleteResponse,
        ErrorResponse,
        Inventory,
        Metadata,
        Note,
        ObjectId,
        Order,
        OrderSummary,
        OrderTax,
        OrderTip,
        Outlet,
        PaymentData,
        Product,
        ProductAttribute,
        Refund,
        RefundCartDiscount,
        RefundLineItemDiscount,
        RefundPayment,
        RefundsLineItem,
        RefundsTax,
        RefundSummary,
        Role,
        RolePermission,
        Session,
        SessionClosingAmounts,
        Station,
        StripeConfig,
        Transaction,
        UpdateAccount,
        UpdateCustomer,
        UpdateOutlet,
        UpdateRefund,
        UpdateRole,
        UpdateSession,
        UpdateStation,
        UpdateVariant,
        UpdateZapierTrigger,
        Variant,
        VariantAttribute,
        ZapierTrigger,
    )

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Account",
    "Address",
    "AiohttpTransport",
    "AsyncFinalPOS",
    "AsyncPaginator",
    "Attachment",
    "AuthenticationError",
    "BadRequestError",
    "CallNext",
    "Category",
    "ClientClosedError",
    "ConflictError",
    "CreateAccount",
    "CreateAttachment",
    "CreateCategory",
    "CreateCustomTableRow",
    "CreateCustomer",
    "CreateOrder",
    "CreateOutlet",
    "CreateProduct",
    "CreateRefund",
    "CreateRole",
    "CreateSession",
    "CreateStation",
    "CreateTransaction",
    "CreateVariant",
    "CreateZapierTrigger",
    "CustomTableRow",
    "Customer",
    "DeleteResponse",
    "ErrorResponse",
    "FailureKind",
    "FieldError",
    "FinalPOSError",
    "HeaderSecret",
    "InternalServerError",
    "Inventory",
    "Limiter",
    "Metadata",
    "Middleware",
    "MockTransport",
    "Model",
    "NotFoundError",
    "NotGiven",
    "Note",
    "ObjectId",
    "Order",
    "OrderSummary",
    "OrderTax",
    "OrderTip",
    "Outlet",
    "Page",
    "PaymentData",
    "PermissionDeniedError",
    "Product",
    "ProductAttribute",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RawResponse",
    "RedisRateLimiter",
    "Refund",
    "RefundCartDiscount",
    "RefundLineItemDiscount",
    "RefundPayment",
    "RefundSummary",
    "RefundsLineItem",
    "RefundsTax",
    "Request",
    "RequestOptions",
    "ResponseValidationError",
    "RetryBudget",
    "RetryPolicy",
    "Role",
    "RolePermission",
    "Secret",
    "Session",
    "SessionClosingAmounts",
    "Station",
    "StripeConfig",
    "Transaction",
    "Transport",
    "TransportError",
    "TransportResponse",
    "UnprocessableEntityError",
    "UpdateAccount",
    "UpdateCustomer",
    "UpdateOutlet",
    "UpdateRefund",
    "UpdateRole",
    "UpdateSession",
    "UpdateStation",
    "UpdateVariant",
    "UpdateZapierTrigger",
    "Variant",
    "VariantAttribute",
    "ZapierTrigger",
    "__version__",
    "encode_path_param",
    "raw_twin",
    "tenant_key",
]


def _embedded_sandbox(api_key: str | None) -> _endpoint.Endpoint:
    # The sandbox package and its endpoint are light; its server loads on the first call.
    from .sandbox import SandboxEndpoint

    return SandboxEndpoint(api_key)


_endpoint.provide_embedded_sandbox(_embedded_sandbox)

# Every name is loaded on first use. Importing a submodule imports this package first, so an
# eager import here would make every `import finalpos_async.<anything>` pay for aiohttp and the
# client (about 300 ms), including the pytest plugin that pytest loads in every run of any
# project where the package is installed. The models (`types/`, about 100 ms of attrs class
# building) are lazy in their own package. `from finalpos_async import Customer` works as
# before; only the first access pays.
_LAZY_MODULES: dict[str, str] = {
    "AsyncFinalPOS": "_client",
    **dict.fromkeys(
        (
            "APIConnectionError",
            "APIStatusError",
            "APITimeoutError",
            "AuthenticationError",
            "BadRequestError",
            "ClientClosedError",
            "ConflictError",
            "FinalPOSError",
            "InternalServerError",
            "NotFoundError",
            "PermissionDeniedError",
            "RateLimitError",
            "RateLimiterUnavailable",
            "ResponseValidationError",
            "UnprocessableEntityError",
        ),
        "_exceptions",
    ),
    "AsyncPaginator": "_pagination",
    "FieldError": "_field_error",
    "Model": "_model",
    "Transport": "_transport",
    "AiohttpTransport": "_transport",
    "TransportError": "_transport",
    "TransportResponse": "_transport",
    "MockTransport": "_transport",
    "Request": "_request",
    "FailureKind": "_retry",
    "Page": "_pagination",
    "Limiter": "_limiter",
    "CallNext": "_middleware",
    "Middleware": "_middleware",
    "RateLimiter": "_rate_limit",
    "RedisRateLimiter": "_redis_limit",
    "RawResponse": "_response",
    "RetryBudget": "_retry",
    "RetryPolicy": "_retry",
    "Secret": "_secret",
    "HeaderSecret": "_secret",
    "NOT_GIVEN": "_types",
    "NotGiven": "_types",
    "RequestOptions": "_types",
    "encode_path_param": "_urls",
    "raw_twin": "_resource",
    "tenant_key": "_redis_limit",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY_MODULES.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    elif name in _models_pkg.__all__:
        value = getattr(_models_pkg, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
