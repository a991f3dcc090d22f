"""The generator's configuration: which spec operation becomes which SDK method.

One row per operation: (client attribute, method name, operationId). A new spec operation is one
new row here, then `python scripts/generate.py`. Methods whose name starts with `list` return an
`AsyncPaginator` over the endpoint's bare JSON array.

`REQUIRED_IN_RESPONSES` (below) lists the response fields the SDK requires beyond the spec's
`required` lists (the record ids), and why.
"""

from __future__ import annotations

OPERATIONS: list[tuple[str, str, str]] = [
    ("customers", "create", "CustomerController_create"),
    ("customers", "retrieve", "CustomerController_findOne"),
    ("customers", "update", "CustomerController_update"),
    ("customers", "delete", "CustomerController_delete"),
    ("customers", "list", "CustomersController_findAll"),
    ("custom_tables", "list", "CustomTablesController_findAll"),
    ("custom_tables", "list_fields", "CustomTableFieldsController_findAll"),
    ("custom_tables", "create_row", "CustomTableDataController_create"),
    ("custom_tables", "retrieve_row", "CustomTableDataController_findOne"),
    ("custom_tables", "list_rows", "CustomTableRowsController_findAll"),
    ("custom_tables", "list_values", "CustomTableValuesController_findAll"),
    ("products", "create", "ProductController_create"),
    ("products", "list", "ProductsController_findAll"),
    ("outlets", "create", "OutletController_create"),
    ("outlets", "retrieve", "OutletController_findOne"),
    ("outlets", "update", "OutletController_update"),
    ("outlets", "delete", "OutletController_delete"),
    ("outlets", "list", "OutletsController_findAll"),
    ("categories", "create", "CategoryController_create"),
    ("categories", "retrieve", "CategoryController_findOne"),
    ("categories", "list", "CategoriesController_findAll"),
    ("stations", "create", "StationController_create"),
    ("stations", "retrieve", "StationController_findOne"),
    ("stations", "update", "StationController_update"),
    ("stations", "delete", "StationController_delete"),
    ("stations", "list", "StationsController_findAll"),
    ("variants", "create", "VariantController_create"),
    ("variants", "retrieve", "VariantController_findOne"),
    ("variants", "update", "VariantController_update"),
    ("variants", "list", "VariantsController_findAll"),
    ("orders", "create", "OrderController_create"),
    ("orders", "delete", "OrderController_delete"),
    ("orders", "list", "OrdersController_findAll"),
    ("transactions", "create", "TransactionsController_create"),
    ("transactions", "retrieve", "TransactionsController_findOne"),
    ("transactions", "delete", "TransactionsController_delete"),
    ("roles", "create", "RolesController_create"),
    ("roles", "retrieve", "RolesController_findOne"),
    ("roles", "update", "RolesController_update"),
    ("attachments", "create", "AttachmentController_create"),
    ("attachments", "retrieve", "AttachmentController_findOne"),
    ("accounts", "create", "AccountController_create"),
    ("accounts", "retrieve", "AccountController_findOne"),
    ("accounts", "update", "AccountController_update"),
    ("accounts", "delete", "AccountController_delete"),
    ("refunds", "create", "RefundsController_create"),
    ("refunds", "retrieve", "RefundsController_findOne"),
    ("refunds", "update", "RefundsController_update"),
    ("sessions", "create", "SessionController_create"),
    ("sessions", "update", "SessionController_update"),
    ("zapier_triggers", "create", "ZapierTriggersController_create"),
    ("zapier_triggers", "update", "ZapierTriggersController_update"),
]

# Response fields the SDK declares required although the spec's `required` lists leave them out.
#
# The rule: the record id of an entity that an operation answers with is required (`id: str`),
# because every stored record has one and callers pass it straight back (`update(customer.id)`);
# a 2xx body without it raises `ResponseValidationError` naming the field, instead of giving a
# model whose id is `None`. `createdAt`/`updatedAt` stay optional: the spec marks neither
# required, and requiring a field the real API omits on some path would make every such call
# fail. Everything else follows the spec's own `required` lists.
#
# The spec copy stays verbatim; the generator checks this table against it (every schema an
# operation answers with that has an `id` property must be listed, and every listed field must
# exist), so a new entity in the spec cannot come back with an optional id.
REQUIRED_IN_RESPONSES: dict[str, tuple[str, ...]] = {
    "AccountDto": ("id",),
    "AttachmentDto": ("id",),
    "CategoryDto": ("id",),
    "CustomerDto": ("id",),
    "OrderDto": ("id",),
    "OutletDto": ("id",),
    "ProductDto": ("id",),
    "RefundDto": ("id",),
    "RoleDto": ("id",),
    "SessionDto": ("id",),
    "StationDto": ("id",),
    "TransactionDto": ("id",),
    "VariantDto": ("id",),
    # A custom-table row's id is `_id` (required by the spec) wrapped as `{"$oid": ...}`; the
    # wrapper means nothing without its one key, so `row.id.oid` is a `str` too.
    "ObjectIdDto": ("$oid",),
}
