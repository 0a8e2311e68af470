"""The HTTP API (`flowmetal serve`): JSON over HTTP for starting and driving programs,
for foreign-function workers in any language, and for callbacks. Needs the `starlette`
package; `uvicorn` serves it."""

from flowmetal.api.app import create_app, drain

__all__ = ["create_app", "drain"]
