"""The console's pages and form posts, at ``/console``.

Every page reads through the same use cases as the API, as the signed-in user's token: the
tenant is the token's, scopes decide which buttons a page shows, and every POST checks its CSRF
token and then the scope again (a forged form gets 403, never a change). A use case's refusal is
shown as a readable page with the API's status code, never a 500.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter, ValidationError

from fulfill import metrics
from fulfill.api.deps import ServiceContext, settings_of, verifier_of
from fulfill.config import DEMO_TENANT, Settings
from fulfill.console import oidc, present
from fulfill.console.approval_facts import approval_facts
from fulfill.console.session import (
    CSRF_FIELD,
    csrf_ok,
    csrf_token,
    current_principal,
    install_sessions,
    log_in,
    log_out,
)
from fulfill.domain.console_login import dev_login_refusal
from fulfill.domain.email_links import LinkRefused
from fulfill.domain.expiry import is_expired
from fulfill.domain.killswitch import GLOBAL_SCOPE, KillSwitchScope, SwitchSettings
from fulfill.domain.models import ActionIntentV1, ApprovalStatus, ExecutionStatus
from fulfill.domain.scopes import USER_SCOPES, Scope
from fulfill.tokens import Principal, TokenError, mint_token
from fulfill.usecases import admin, connectors, email_links, executions, intents, registry, resolutions
from fulfill.usecases import approvals as approvals_usecase
from fulfill.usecases.admin import ActionTypes, KillSwitches, TenantExecution
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.dashboard import DASHBOARD_SCOPES
from fulfill.usecases.errors import UseCaseError
from fulfill.usecases.resolutions import ResolveRequest

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

_HERE = Path(__file__).parent


@functools.cache
def templates() -> Jinja2Templates:
    """The console's templates, loaded (with Jinja) by the first page rendered: a service whose
    console nobody opens never imports Jinja."""
    from fastapi.templating import Jinja2Templates

    loaded = Jinja2Templates(directory=str(_HERE / "templates"))
    loaded.env.globals["Scope"] = Scope
    return loaded


router = APIRouter(prefix="/console", include_in_schema=False)

_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
# The local login offers the tenant last signed in to from this browser, else the quick start's demo
# tenant (the one `fulfill serve --demo` writes to), so a first look at the console is not empty.
DEV_TENANT_COOKIE = "fulfill_console_tenant"
DEV_DEFAULT_TENANT = DEMO_TENANT
_STATUS_OF_KIND = {"not-found": 404, "conflict": 409, "forbidden": 403, "invalid": 422, "bad-request": 400}
# Scopes the dev login offers (all of them are the API's own).
DEV_SCOPES = USER_SCOPES
DEV_TOKEN_TTL_SECONDS = 3600
MAX_FORM_FIELD = 2000
# Every page: only this service's scripts and styles, never inside another site's frame (a
# one-click stop must not be clickable through someone else's page), never cached. Forms lead to
# this service only, and to the identity provider when one is configured (the sign-out's answer
# redirects to its end-session endpoint, and browsers apply form-action to that redirect too).
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def content_security_policy(form_origins: list[str]) -> str:
    form_action = " ".join(["'self'", *form_origins])
    return (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"frame-ancestors 'none'; form-action {form_action}; base-uri 'none'"
    )


class Refused(Exception):
    """A request the console answers with a page explaining why (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def install_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console at ``/console``: sessions, pages and its static files (no CDN)."""
    from fulfill.console.dashboard_page import (
        router as dashboard_router,
    )  # imported here: it uses this module

    app.state.console_enabled = install_sessions(app, settings)
    app.include_router(router)
    app.include_router(dashboard_router)
    app.mount("/console/static", StaticFiles(directory=str(_HERE / "static")), name="console-static")


# --- plumbing ----------------------------------------------------------------------------------


def _render(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    flash = request.session.pop("flash", None) if principal is not None else None
    warnings = request.session.pop("warnings", None) if principal is not None else None
    response = templates().TemplateResponse(
        request,
        template,
        {
            "principal": principal,
            "csrf": csrf_token(request),
            "csrf_field": CSRF_FIELD,
            "flash": flash,
            "flash_warnings": warnings if isinstance(warnings, list) else [],
            "can": (lambda scope: principal is not None and principal.has_scope(scope)),
            "dev_login": _dev_login_refusal(request) is None,
            **context,
        },
        status_code=status_code,
    )
    response.headers.update(PAGE_HEADERS)
    login = oidc.configured_login(request)
    response.headers["Content-Security-Policy"] = content_security_policy(
        login.form_action_origins() if login is not None else []
    )
    return response


def _refusal(request: Request, principal: Principal | None, status: int, message: str) -> HTMLResponse:
    return _render(request, "error.html", principal, status_code=status, message=message)


def _dev_login_refusal(request: Request) -> str | None:
    """Why this request may not use the local login (see fulfill.domain.console_login)."""
    return dev_login_refusal(
        enabled=settings_of(request).console_dev_login_enabled,
        client_host=request.client.host if request.client else None,
        host_header=request.headers.get("host", ""),
        header_names=request.headers.keys(),
    )


def _to_login(request: Request) -> Response:
    if request.headers.get("HX-Request"):
        return Response(status_code=200, headers={"HX-Redirect": "/console/login"})
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(wanted)}", status_code=303)


def _safe_next(raw: str | None) -> str:
    """Only a console path of this service (never another site) to go to after login."""
    if raw and raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/console/"


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form (the only kind the console's forms send); other bodies are refused."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if not raw and not content_type:
        return {}  # an empty form (then refused for its missing CSRF token)
    if content_type != "application/x-www-form-urlencoded":
        raise Refused(415, "This form must be sent as application/x-www-form-urlencoded.")
    body = raw.decode("utf-8", errors="replace")
    form = parse_qs(body, keep_blank_values=True, max_num_fields=500)
    if any(len(value) > MAX_FORM_FIELD for values in form.values() for value in values):
        raise Refused(422, f"A form field is longer than {MAX_FORM_FIELD} characters.")
    return form


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name, [])
    return values[0] if values else ""


Form = dict[str, list[str]]
NO_FORM: Form = {}


async def _guarded(
    request: Request,
    ctx: UseCaseContext,
    page: Callable[[Principal, Form], Response],
    *,
    post_scope: str | None = None,
) -> Response:
    """Run a page for the signed-in user, in a worker thread (the use cases block on the
    database, as the API's routes do). No user, or one whose token stopped being valid: back to
    the login page. For a POST (``post_scope`` given), the form's CSRF token must match the
    session's and the user must hold the scope (``"admin|platform:admin"``: either), else 403.
    A refusal becomes a readable page with the API's status code."""
    if not request.app.state.console_enabled:
        return HTMLResponse(
            "The console is not configured: set FULFILL_CONSOLE_SESSION_SECRET.", status_code=503
        )
    principal = await anyio.to_thread.run_sync(
        lambda: current_principal(request, ctx, verifier_of(request), now=ctx.clock.now())
    )
    if principal is None:
        return _to_login(request)
    login = oidc.configured_login(request)
    if login is not None:
        await login.discover_for_pages()  # the page's sign-out form may lead to the provider
    try:
        form = NO_FORM
        if post_scope is not None:
            form = await _form(request)
            if not csrf_ok(request, form):
                raise Refused(
                    403, "The form's security token is missing or out of date. Reload the page and try again."
                )
            if post_scope and not any(principal.has_scope(s) for s in post_scope.split("|")):
                raise Refused(403, f"Your sign-in lacks the scope '{post_scope}' this action needs.")
        return await anyio.to_thread.run_sync(page, principal, form)
    except Refused as exc:
        return _refusal(request, principal, exc.status, exc.message)
    except UseCaseError as exc:
        return _refusal(request, principal, _STATUS_OF_KIND.get(exc.kind, 422), exc.message)


def _require(principal: Principal, *scopes: str) -> None:
    if not any(principal.has_scope(scope) for scope in scopes):
        raise Refused(403, f"Your sign-in lacks the scope '{' or '.join(scopes)}' this page needs.")


def _checked_id(value: str) -> str:
    if not _ID.match(value):
        raise Refused(404, "No such intent.")
    return value


# --- login ------------------------------------------------------------------------------------


def _no_console_scope(request: Request, principal: Principal) -> str:
    """What to change when a sign-in opens no page: which scopes the token holds, where they are
    read from, and which ones the console needs."""
    settings = settings_of(request)
    held = " ".join(sorted(principal.scopes)) or "none"
    claim = settings.jwt_scope_claim
    source = (
        f"its scope claim, or the claim {claim} (FULFILL_JWT_SCOPE_CLAIM)" if claim else "its scope claim"
    )
    needed = (
        f"{Scope.INTENTS_READ} (approvals), {Scope.EXECUTIONS_READ} (executions), "
        f"{Scope.ADMIN} or {Scope.PLATFORM_ADMIN} (kill switches, registry)"
    )
    message = (
        f"Your sign-in grants no console scope. The token's scopes, read from {source}: {held}. "
        f"The console needs at least one of {needed}."
    )
    if getattr(settings, "oidc_issuer", ""):
        message += (
            f" Ask the identity provider for them at sign-in (FULFILL_OIDC_SCOPES, now "
            f'"{settings.oidc_scopes}") and have it put them in the token\'s scope claim, or name '
            "the claim that holds them with FULFILL_JWT_SCOPE_CLAIM."
        )
    else:
        message += " Sign out and pick them at the local login."
    return message


@router.get("")
def console_root() -> Response:
    return RedirectResponse("/console/", status_code=307)


@router.get("/")
async def home(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        # The first page is the dashboard, for every console scope (approvals stay in the nav).
        if any(principal.has_scope(scope) for scope in DASHBOARD_SCOPES):
            return RedirectResponse("/console/dashboard", status_code=303)
        return _render(request, "error.html", principal, message=_no_console_scope(request, principal))

    return await _guarded(request, ctx, page)


def _login_page(request: Request, status_code: int = 200, message: str | None = None) -> HTMLResponse:
    settings = settings_of(request)
    return _render(
        request,
        "login.html",
        None,
        status_code=status_code,
        message=message,
        oidc=bool(getattr(settings, "oidc_issuer", "")),
        dev_scopes=DEV_SCOPES,
        dev_tenant=_dev_default_tenant(request),
        # Why there is no local login, where one could exist (dev mode).
        dev_login_refusal=_dev_login_refusal(request) if settings.auth_mode == "dev" else None,
        next=_safe_next(request.query_params.get("next")),
    )


def _dev_default_tenant(request: Request) -> str:
    remembered = request.cookies.get(DEV_TENANT_COOKIE, "")
    return remembered if _ID.match(remembered) else DEV_DEFAULT_TENANT


@router.get("/login")
def login_page(request: Request) -> Response:
    if not request.app.state.console_enabled:
        return HTMLResponse(
            "The console is not configured: set FULFILL_CONSOLE_SESSION_SECRET.", status_code=503
        )
    return _login_page(request)


@router.post("/login")
async def dev_login(request: Request, ctx: ServiceContext) -> Response:
    """Dev mode on loopback only: mint a short-lived dev token for the chosen tenant, subject and
    scopes (see fulfill.domain.console_login for who gets it)."""
    settings = settings_of(request)
    if not request.app.state.console_enabled or settings.auth_mode != "dev":
        return _refusal(request, None, 404, "The local login exists in dev mode only.")
    refusal = _dev_login_refusal(request)
    if refusal is not None:
        return _refusal(request, None, 404, refusal)
    try:
        form = await _form(request)
    except Refused as exc:
        return _refusal(request, None, exc.status, exc.message)
    if not csrf_ok(request, form):
        return _login_page(request, 403, "The form's security token is missing or out of date. Try again.")
    tenant, subject = _one(form, "tenant").strip(), _one(form, "subject").strip()
    scopes = [scope for scope in form.get("scopes", []) if scope in DEV_SCOPES]
    accounts = [a.strip() for a in _one(form, "account_ids").split(",") if a.strip()]
    if not _ID.match(tenant) or not subject or len(subject) > 128:
        return _login_page(
            request, 422, "Give a tenant (letters, digits, '_', '.', ':', '@', '-') and a subject."
        )
    if any(not _ID.match(account) for account in accounts):
        return _login_page(request, 422, "Account ids are letters, digits, '_', '.', ':', '@' or '-'.")
    token = mint_token(
        settings,
        tenant_id=tenant,
        scopes=scopes,
        subject=subject,
        account_ids=accounts or None,
        ttl_seconds=DEV_TOKEN_TTL_SECONDS,
    )
    try:
        principal = verifier_of(request).verify(token)
    except TokenError as exc:  # e.g. a dev deployment that accepts only identity-provider tokens
        return _login_page(request, 422, f"The service does not accept the dev token: {exc}")
    await anyio.to_thread.run_sync(lambda: log_in(request, ctx, token, principal, now=ctx.clock.now()))
    response = RedirectResponse(_safe_next(_one(form, "next")), status_code=303)
    # Not a credential: only the tenant name, offered again at the next local login.
    response.set_cookie(
        DEV_TENANT_COOKIE, tenant, max_age=30 * 24 * 3600, path="/console", httponly=True, samesite="lax"
    )
    return response


@router.post("/logout")
async def logout(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        log_out(request, ctx, now=ctx.clock.now())  # every copy of the cookie is refused from now on
        return RedirectResponse("/console/login", status_code=303)

    response = await _guarded(request, ctx, page, post_scope="")
    login = oidc.configured_login(request)
    if response.status_code == 303 and login is not None:
        # Signed in through the identity provider: end its session too, when it offers that.
        target = await login.logout_url(request)
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    return response


# --- approvals ---------------------------------------------------------------------------------


# The age filter: proposed at least this long ago.
AGE_CHOICES = {"": None, "1h": 3600, "1d": 86_400, "7d": 7 * 86_400}
ORDER_CHOICES = ("newest", "oldest")


def _pending_query(request: Request) -> tuple[approvals_usecase.PendingQuery, dict[str, str]]:
    """The approvals page's filters from its query string (and the same, to build its links)."""
    params = request.query_params
    chosen = {
        "action_type": params.get("action_type", "").strip(),
        "account_id": params.get("account_id", "").strip(),
        "proposed_by": params.get("proposed_by", "").strip(),
        "policy_id": params.get("policy_id", "").strip(),
        "age": params.get("age", "").strip(),
        "order": params.get("order", "").strip() or "newest",
    }
    if chosen["age"] not in AGE_CHOICES:
        raise Refused(400, "The age filter is one of: any, 1h, 1d, 7d.")
    if chosen["order"] not in ORDER_CHOICES:
        raise Refused(400, "The order is newest or oldest.")
    query = approvals_usecase.PendingQuery(
        action_type=chosen["action_type"] or None,
        account_id=chosen["account_id"] or None,
        proposed_by=chosen["proposed_by"] or None,
        policy_id=chosen["policy_id"] or None,
        min_age_seconds=AGE_CHOICES[chosen["age"]],
        oldest_first=chosen["order"] == "oldest",
        cursor=params.get("after") or None,
    )
    return query, chosen


@router.get("/approvals")
async def approvals(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        _require(principal, Scope.INTENTS_READ)
        now = ctx.clock.now()
        query, chosen = _pending_query(request)
        shown_before = request.query_params.get("shown", "0")
        before = int(shown_before) if shown_before.isdigit() and len(shown_before) < 9 else 0
        result = approvals_usecase.page_pending(ctx, principal, query)
        rows = [
            {
                "intent": intent,
                "expired": is_expired(intent.expires_at_epoch, now),
                "parameters": present.parameter_rows(intent.parameters),
                "facts": approval_facts(intent),
            }
            for intent in result.intents
        ]
        filters = {
            name: value for name, value in chosen.items() if value and (name, value) != ("order", "newest")
        }
        next_url = (
            "/console/approvals?"
            + urlencode({**filters, "after": result.next_cursor, "shown": before + len(rows)})
            if result.next_cursor
            else None
        )
        return _render(
            request,
            "approvals.html",
            principal,
            rows=rows,
            this_url=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            max_selected=approvals_usecase.MAX_DECIDED_AT_ONCE,
            now=now,
            total=result.total,
            first=before + 1,
            last=before + len(rows),
            next_url=next_url,
            first_url=("/console/approvals?" + urlencode(filters)) if before else None,
            chosen=chosen,
            filtered=bool(filters.keys() - {"order"}),
            action_types=sorted({entry.action_type for entry in registry.list_versions(ctx.store)}),
            accounts=intents.list_accounts(ctx, principal),
            ages=[
                ("", "any age"),
                ("1h", "1 hour or more"),
                ("1d", "1 day or more"),
                ("7d", "7 days or more"),
            ],
        )

    return await _guarded(request, ctx, page)


@router.post("/approvals/decide")
async def decide_selected(request: Request, ctx: ServiceContext) -> Response:
    """Approve or reject the intents selected on the approvals page, each on its own (the same
    rules as one by one; never with edited parameters); a page reports what became of each."""

    def page(principal: Principal, form: Form) -> Response:
        decision = _one(form, "decision")
        if decision not in {choice.value for choice in approvals_usecase.BulkDecision}:
            raise Refused(422, "Choose to approve or to reject the selected intents.")
        selected = [value.strip() for value in form.get("selected", []) if value.strip()]
        if not selected:
            raise Refused(422, "Select at least one intent first.")
        results = approvals_usecase.decide_many(
            ctx,
            principal,
            selected,
            approvals_usecase.BulkDecision(decision),
            comment=_one(form, "comment") or None,
        )
        back = _one(form, "back")
        return _render(
            request,
            "decided.html",
            principal,
            decision=decision,
            results=results,
            accepted=sum(1 for result in results if result.accepted),
            back=back if back.startswith("/console/approvals") and "\\" not in back else "/console/approvals",
        )

    return await _guarded(request, ctx, page, post_scope=Scope.INTENTS_APPROVE)


@router.post("/intents/{action_intent_id}/approve")
async def approve(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    def page(principal: Principal, form: Form) -> Response:
        intent_id = _checked_id(action_intent_id)
        change = intents.approve_intent(
            ctx,
            principal,
            intent_id,
            comment=_one(form, "comment"),
            parameters=_edited_parameters(ctx, principal, intent_id, _one(form, "parameters")),
        )
        if change.approval_status is ApprovalStatus.APPROVED:
            request.session["flash"] = f"Approved {intent_id}."
        else:
            request.session["flash"] = (
                f"Your approval of {intent_id} is counted: {len(change.approvals or [])} of "
                f"{change.approvals_required} approvals."
            )
        if change.warnings:
            request.session["warnings"] = change.warnings
        return RedirectResponse(f"/console/executions/{quote(intent_id)}", status_code=303)

    return await _guarded(request, ctx, page, post_scope=Scope.INTENTS_APPROVE)


def _edited_parameters(
    ctx: UseCaseContext, principal: Principal, intent_id: str, spelled: str
) -> dict[str, Any] | None:
    """The approve form's parameters (JSON) when they differ from the intent's, else None (a
    plain approval). Not a JSON object: a page that says why, and nothing changes."""
    if not spelled.strip():
        return None
    try:
        parameters = json.loads(spelled)
    except ValueError as exc:
        raise Refused(422, f"The parameters are not valid JSON: {exc}.") from None
    if not isinstance(parameters, dict):
        raise Refused(422, "The parameters must be a JSON object ({...}).")
    if parameters == intents.get_intent(ctx, principal, intent_id).parameters:
        return None
    return parameters


@router.post("/intents/{action_intent_id}/cancel")
async def cancel(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        intent_id = _checked_id(action_intent_id)
        intents.cancel_intent(ctx, principal, intent_id)
        request.session["flash"] = f"Cancelled {intent_id}."
        return RedirectResponse(f"/console/executions/{quote(intent_id)}", status_code=303)

    return await _guarded(request, ctx, page, post_scope=Scope.INTENTS_APPROVE)


@router.post("/intents/{action_intent_id}/rerun")
async def rerun(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    def page(principal: Principal, form: Form) -> Response:
        intent_id = _checked_id(action_intent_id)
        reason = _one(form, "reason").strip() or None
        if reason is not None and len(reason) > 500:
            raise Refused(422, "The reason is longer than 500 characters.")
        started = executions.rerun_execution(
            ctx, principal, intent_id, executions.RerunRequest(reason=reason)
        )
        request.session["flash"] = f"Rerun of {intent_id} started: attempt {started.attempt_count}."
        return RedirectResponse(f"/console/executions/{quote(intent_id)}", status_code=303)

    return await _guarded(request, ctx, page, post_scope=Scope.ADMIN)


@router.post("/executions/{action_intent_id}/resolve")
async def resolve(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    """An admin resolves an AMBIGUOUS execution from its timeline (a person: never an agent's token)."""

    def page(principal: Principal, form: Form) -> Response:
        intent_id = _checked_id(action_intent_id)
        resolution = _one(form, "resolution")
        refs = [_console_ref(line) for line in _one(form, "refs").splitlines() if line.strip()]
        reason = _one(form, "reason").strip() or None
        try:
            body = ResolveRequest(
                resolution=resolution,
                external_object_refs=refs if resolution == "committed" else [],
                reason=reason,
            )
        except ValidationError as exc:
            raise Refused(422, "; ".join(error["msg"] for error in exc.errors())) from None
        resolved = resolutions.resolve_execution(ctx, principal, intent_id, body)
        request.session["flash"] = f"Resolved {intent_id}: {resolved.status.value}."
        return RedirectResponse(f"/console/executions/{quote(intent_id)}", status_code=303)

    return await _guarded(request, ctx, page, post_scope=Scope.ADMIN)


def _console_ref(line: str) -> dict[str, str]:
    """One ``system:type:id`` line (the system may hold a colon: ``MCP:tickets:Ticket:T-1``)."""
    parts = line.strip().rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise Refused(422, f"'{line.strip()}' is not system:type:id.")
    return {"system": parts[0], "object_type": parts[1], "object_id": parts[2]}


@router.post("/intents/{action_intent_id}/reject")
async def reject(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    def page(principal: Principal, form: Form) -> Response:
        intent_id = _checked_id(action_intent_id)
        intents.reject_intent(ctx, principal, intent_id, comment=_one(form, "comment"))
        request.session["flash"] = f"Rejected {intent_id}."
        return RedirectResponse("/console/approvals", status_code=303)

    return await _guarded(request, ctx, page, post_scope=Scope.INTENTS_APPROVE)


# --- executions ---------------------------------------------------------------------------------


@router.get("/executions")
async def execution_list(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        _require(principal, Scope.EXECUTIONS_READ)
        query = request.query_params
        accounts = intents.list_accounts(ctx, principal)
        account = query.get("account_id") or (accounts[0] if accounts else "")
        status_raw = query.get("status") or None
        next_token = query.get("next_token") or None
        page_rows = None
        if account:
            if not _ID.match(account):
                raise Refused(400, "An account id is letters, digits, '_', '.', ':', '@' or '-'.")
            page_rows = executions.list_account_executions(
                ctx,
                principal,
                account,
                limit=25,
                status=executions.parse_status_filter(status_raw),
                next_token=next_token,
            )
        rows = page_rows.executions if page_rows else []
        context: dict[str, Any] = {
            "accounts": accounts,
            "account": account,
            "status": status_raw or "",
            "statuses": list(present.STATUS_SYMBOLS),
            "rows": rows,
            "next_url": (
                "/console/executions?"
                + urlencode(
                    {"account_id": account, "status": status_raw or "", "next_token": page_rows.next_token}
                )
                if page_rows and page_rows.next_token
                else None
            ),
            "live": any(not present.is_terminal(row.status.value) for row in rows),
            "self_url": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
            "symbols": present.STATUS_SYMBOLS,
        }
        template = "_execution_rows.html" if request.headers.get("HX-Request") else "executions.html"
        return _render(request, template, principal, **context)

    return await _guarded(request, ctx, page)


def _execution_context(
    request: Request, ctx: UseCaseContext, principal: Principal, intent_id: str
) -> dict[str, Any]:
    intent: ActionIntentV1 = executions.execution_intent(ctx, principal, intent_id)
    status = executions.execution_status(ctx, principal, intent_id)
    timeline = executions.timeline(ctx, principal, intent_id)
    steps = present.timeline_steps([entry.model_dump() for entry in timeline.entries])
    error = (
        present.explain_error(status.error_class.value if status.error_class else None, status.error_code)
        if status.error_code or status.error_class
        else None
    )
    return {
        "intent": intent,
        "status": status,
        "steps": steps,
        "error": error,
        "terminal": present.is_terminal(status.status.value),
        "symbols": present.STATUS_SYMBOLS,
        "parameters": present.parameter_rows(intent.parameters),
        "facts": approval_facts(intent),
        "pending_approval": intent.approval_status is ApprovalStatus.PENDING_APPROVAL,
        "expired": is_expired(intent.expires_at_epoch, ctx.clock.now()),
        # What approving now runs into (a kill switch that is on), said before the click.
        "stop_warnings": (
            intents.active_stop_warnings(ctx, intent)
            if intent.approval_status is ApprovalStatus.PENDING_APPROVAL
            else []
        ),
        "rerunnable": status.status.value in ("FAILED", "CANCELLED")
        and intent.approval_status is not ApprovalStatus.CANCELLED,
        "cancellable": intent.approval_status is ApprovalStatus.APPROVED
        and status.status is not ExecutionStatus.AMBIGUOUS,
        "resolvable": status.status is ExecutionStatus.AMBIGUOUS,
    }


@router.get("/open")
async def open_email_link(request: Request, ctx: ServiceContext) -> Response:
    """An email's signed link: after the login (the link is kept through it), the intent's page,
    once. Never a decision: the page is where a person approves or rejects. A link that was
    changed, is of another tenant (403), expired or already used (410) opens nothing."""

    def page(principal: Principal, _form: Form) -> Response:
        opened = email_links.open_link(ctx, principal, request.query_params.get("link", ""))
        if isinstance(opened, LinkRefused):
            return _refusal(request, principal, opened.status, opened.message)
        return RedirectResponse(
            f"/console/executions/{quote(opened.action_intent_id, safe='')}", status_code=303
        )

    return await _guarded(request, ctx, page)


@router.get("/executions/{action_intent_id}")
async def execution_page(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    return await _execution_view(request, ctx, action_intent_id, "timeline.html")


@router.get("/executions/{action_intent_id}/live")
async def execution_live(request: Request, ctx: ServiceContext, action_intent_id: str) -> Response:
    """The status and timeline part of the execution page, polled until the execution ends."""
    return await _execution_view(request, ctx, action_intent_id, "_timeline_live.html")


async def _execution_view(
    request: Request, ctx: UseCaseContext, action_intent_id: str, template: str
) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        _require(principal, Scope.EXECUTIONS_READ)
        context = _execution_context(request, ctx, principal, _checked_id(action_intent_id))
        return _render(request, template, principal, **context)

    return await _guarded(request, ctx, page)


# --- kill switches -----------------------------------------------------------------------------


@router.get("/kill-switches")
async def kill_switches(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        _require(principal, Scope.ADMIN, Scope.PLATFORM_ADMIN)
        return _render(request, "kill_switches.html", principal, **_switches_context(request, ctx, principal))

    return await _guarded(request, ctx, page)


def _switches_context(request: Request, ctx: UseCaseContext, principal: Principal) -> dict[str, Any]:
    context: dict[str, Any] = {
        "action_types": sorted({entry.action_type for entry in registry.list_versions(ctx.store)}),
        "environment_stop": ctx.settings.global_execution_stop,
    }
    if principal.has_scope(Scope.PLATFORM_ADMIN):
        context["global_switches"] = KillSwitches.of(admin.read_switches(ctx.store, GLOBAL_SCOPE))
        context["global_history"] = admin.kill_switch_history(ctx.store, GLOBAL_SCOPE)
    if principal.has_scope(Scope.ADMIN):
        own = KillSwitchScope.of_tenant(principal.tenant_id)
        context["tenant_switches"] = TenantExecution.of(admin.read_switches(ctx.store, own))
        context["tenant_history"] = admin.kill_switch_history(ctx.store, own)
    return context


def _flag(form: dict[str, list[str]], name: str) -> bool:
    value = _one(form, name)
    if value not in ("true", "false"):
        raise Refused(422, f"The form's '{name}' must be true or false.")
    return value == "true"


_ACTION_TYPES: TypeAdapter[list[str]] = TypeAdapter(ActionTypes)


@router.post("/kill-switches/global")
async def set_global(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, form: Form) -> Response:
        return _save_switches(request, ctx, principal, form, GLOBAL_SCOPE)

    return await _guarded(request, ctx, page, post_scope=Scope.PLATFORM_ADMIN)


@router.post("/kill-switches/tenant")
async def set_tenant(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, form: Form) -> Response:
        return _save_switches(request, ctx, principal, form, KillSwitchScope.of_tenant(principal.tenant_id))

    return await _guarded(request, ctx, page, post_scope=Scope.ADMIN)


def _save_switches(
    request: Request, ctx: UseCaseContext, principal: Principal, form: Form, scope: KillSwitchScope
) -> Response:
    """Store the form's switches of a scope; one that stops more than now is confirmed first."""
    try:
        wanted = SwitchSettings.from_fields(
            scope,
            {
                scope.stop_field: _flag(form, scope.stop_field),
                "disabled_action_types": _ACTION_TYPES.validate_python(form.get("disabled_action_types", [])),
            },
        )
    except ValidationError:
        raise Refused(422, "An action type is written in capitals, digits and '_'.") from None
    current = admin.read_switches(ctx.store, scope).settings
    stops_more = (wanted.stopped and not current.stopped) or bool(
        set(wanted.disabled_action_types) - set(current.disabled_action_types)
    )
    description = _describe(scope, wanted)
    if stops_more and _one(form, "confirmed") != "yes":
        return _confirm(request, principal, f"/console/kill-switches/{scope.name}", form, description)
    admin.write_switches(ctx, scope, wanted, changed_by=principal.subject)
    saved = "Global switches saved: " if scope.is_global else "Tenant switches saved: "
    request.session["flash"] = saved + description
    return RedirectResponse("/console/kill-switches", status_code=303)


def _describe(scope: KillSwitchScope, wanted: SwitchSettings) -> str:
    if scope.tenant_id is None:
        what = "every execution of every tenant STOPPED" if wanted.stopped else "executions running"
        disabled = "; disabled for all tenants: "
    else:
        what = f"tenant {scope.tenant_id}: " + ("every execution STOPPED" if wanted.stopped else "running")
        disabled = "; disabled: "
    if wanted.disabled_action_types:
        what += disabled + ", ".join(wanted.disabled_action_types)
    return what


def _confirm(
    request: Request, principal: Principal, action: str, form: dict[str, list[str]], description: str
) -> HTMLResponse:
    fields = [(name, value) for name, values in form.items() if name != CSRF_FIELD for value in values]
    return _render(request, "confirm.html", principal, action=action, fields=fields, description=description)


# --- registry and connectors --------------------------------------------------------------------


@router.get("/registry")
async def registry_page(request: Request, ctx: ServiceContext) -> Response:
    def page(principal: Principal, _form: Form) -> Response:
        _require(principal, Scope.PLATFORM_ADMIN)
        return _render(
            request,
            "registry.html",
            principal,
            entries=registry.list_versions(ctx.store),
            connectors=connectors.list_connectors(ctx.store, ctx.connector_names()),
            latency=metrics.RECENT_CALLS.latency(),
        )

    return await _guarded(request, ctx, page)
