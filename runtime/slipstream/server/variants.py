"""`f.with_options(gpu=..., timeout=..., retries=..., workers=...)`: the same code with other
settings, served by a pool of its own, without editing the decorator.

    POST /v1/projects/{project}/endpoints/{name}/variants   {"gpu": "H100", "timeout": 60, ...}
         -> {"name": "<name>.v<hash>", "spec": {...}}

The variant is an endpoint of the project named after its base and a hash of the options; its
workers run the base's function. A deploy updates it as it updates its base (service.py
_apply): its spec is the base's new one with the same options, its workers load the new
generation between calls (the calls it is running finish), and it goes when its base goes.
"""

from __future__ import annotations

import json
from typing import Any

from ..spec.variants import OPTIONS, variant_name, variant_spec

__all__ = [
    "OPTIONS",
    "variant_name",
    "variant_spec",
    "add_variant_routes",
]  # the spec side is spec/variants.py


def add_variant_routes(app: Any, rt: Any) -> None:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ..spec.endpoint_spec import SpecError
    from .replies import error_reply

    async def create(request: Any) -> Any:
        project, name = request.path_params["project"], request.path_params["name"]
        try:
            options = await request.json()
        except ValueError:
            return error_reply(
                400, "BadRequest", 'body must be a JSON object of options, e.g. {"gpu": "H100"}'
            )
        if not isinstance(options, dict):
            return error_reply(
                400, "BadRequest", 'body must be a JSON object of options, e.g. {"gpu": "H100"}'
            )
        try:
            proj = rt.project(project)
            base = rt.pool(name, project)
        except (KeyError, ValueError) as exc:
            return error_reply(404, "UnknownEndpoint", exc.args[0] if exc.args else str(exc))
        base_name = base.target
        try:
            spec = variant_spec(
                base.spec if base.name == base_name else proj.pools[base_name].spec, options
            )
        except (SpecError, TypeError) as exc:
            return error_reply(422, "BadOptions", str(exc))
        pool = proj.pools.get(spec.name)
        if pool is None:
            info = {
                **base.info,
                "name": spec.name,
                "variant_of": base_name,
                "variant_options": options,  # to rebuild its spec on the next deploy
            }
            await rt.add_pool(
                proj, spec, base.gen, info, target=base_name
            )  # its workers run the base's function
            proj.logs.emit(
                endpoint=spec.name,
                stream="system",
                text=f"variant of {base_name!r} with {json.dumps(options, default=str)}",
            )
        return JSONResponse({"name": spec.name, "variant_of": base_name, "spec": spec.to_dict()})

    app.router.routes.append(
        Route("/v1/projects/{project}/endpoints/{name}/variants", create, methods=["POST"])
    )
