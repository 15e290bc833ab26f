"""Mutual TLS that authorises roles: a server interceptor reads the caller's certificate from
gRPC's auth context and admits only the roles a service takes (PERMISSION_DENIED otherwise,
naming the role expected). A node's Student service takes the gateway; the gateway's Gateway
service takes clients (and the identities --allow-client names); health and reflection take
any role of the same cluster. Without a CA (plaintext, or TLS without client certificates)
there is no caller certificate and nothing to authorise."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from nonn.edge import identity as ids
from nonn.edge.errors import EdgeError

_DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class Rule:
    """Callers of `cluster` holding one of `roles` (empty: any role), or one of `allow`
    (role/name or a full spiffe:// URI)."""

    cluster: str
    roles: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()

    def check(self, auth_context: dict) -> str | None:
        """None when the caller is admitted, else why not (one line naming the role expected)."""
        pems = auth_context.get("x509_pem_cert") or ()
        if not pems:
            return None if not auth_context.get("transport_security_type") else self._expected("no certificate")
        try:
            who = ids.identity_of_pem(pems[0])
        except EdgeError:
            who = None
        if who is None:
            return (f"the caller's certificate has no nonn role (made by an older `nonn certs`?); "
                    f"{ids.RERUN_CERTS}")
        if who.uri in self.allow or who.short in self.allow:
            return None
        if who.cluster != self.cluster:
            return self._expected(f"{who.uri}, of cluster {who.cluster!r}")
        if self.roles and who.role not in self.roles:
            return self._expected(who.uri)
        return None

    def _expected(self, got: str) -> str:
        roles = " or ".join(self.roles) or "any"
        extra = f" (or one of --allow-client {', '.join(self.allow)})" if self.allow else ""
        return f"this service takes the {roles} role of cluster {self.cluster!r}{extra}; the caller is {got}"


class Policy:
    """Rules per service: {"/nonn.v1.Student/": Rule}; `default` for every other method."""

    def __init__(self, rules: dict[str, Rule], default: Rule):
        self.rules, self.default = dict(rules), default

    def rule(self, method: str) -> Rule:
        for prefix, rule in self.rules.items():
            if method.startswith(prefix):
                return rule
        return self.default


def _kinds(handler):
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        if getattr(handler, kind) is not None:
            return kind, getattr(handler, kind)
    return None, None


_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _rebuild(handler, kind, behaviour):
    return _FACTORIES[kind](behaviour, request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)


class SyncAuthorizer(grpc.ServerInterceptor):
    """For grpc.server (the node)."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        kind, behaviour = _kinds(handler) if handler is not None else (None, None)
        if kind is None:
            return handler
        rule = self.policy.rule(handler_call_details.method)
        if kind.endswith("stream"):
            def guarded(request, context):
                problem = rule.check(context.auth_context())
                if problem:
                    context.abort(_DENIED, problem)
                yield from behaviour(request, context)
        else:
            def guarded(request, context):
                problem = rule.check(context.auth_context())
                if problem:
                    context.abort(_DENIED, problem)
                return behaviour(request, context)
        return _rebuild(handler, kind, guarded)


class AioAuthorizer(grpc.aio.ServerInterceptor):
    """For grpc.aio.server (the gateway)."""

    def __init__(self, policy: Policy):
        self.policy = policy

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        kind, behaviour = _kinds(handler) if handler is not None else (None, None)
        if kind is None:
            return handler
        rule = self.policy.rule(handler_call_details.method)
        if kind.endswith("stream"):
            async def guarded(request, context):
                problem = rule.check(context.auth_context())
                if problem:
                    await context.abort(_DENIED, problem)
                result = behaviour(request, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write
                    await result
        else:
            async def guarded(request, context):
                problem = rule.check(context.auth_context())
                if problem:
                    await context.abort(_DENIED, problem)
                return await behaviour(request, context)
        return _rebuild(handler, kind, guarded)
