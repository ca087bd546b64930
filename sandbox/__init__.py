"""The reference stack: six aiohttp apps on loopback, started by `python -m sandbox`.

| app | port setting | main endpoints |
| --- | --- | --- |
| storefront | `storefront_port` | `POST /_sim/emit`, `GET /admin/api/orders.json` |
| legacy flow | `legacy_port` | `POST /webhooks/orders/create`, `GET /_sim/stats`, `GET /_sim/exceptions` |
| gated flow | `gated_port` | `POST /webhooks/orders/create`, `GET /_sim/stats`, `GET /_sim/exceptions` |
| ERP, legacy account | `erp_port` | `/services/rest/record/v1/salesOrder`, `GET /_sim/orders`, `GET /_sim/stats` |
| ERP, candidate account | `erp_candidate_port` | as the legacy account |
| email service | `email_port` | `POST /v3/mail/send`, `GET /_sim/messages` |

Every app also serves `GET /health`. Paths under `/_sim/` belong to the
simulation and have no counterpart in the real services.
"""

# Environment variable that carries the webhook signing secret to
# `python -m sandbox`, so that the settings file the harness writes into a
# run folder contains no secret.
WEBHOOK_SECRET_ENV = "CUTOVER_SANDBOX_WEBHOOK_SECRET"
