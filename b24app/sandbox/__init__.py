"""A local Bitrix24 for trying, testing and benchmarking the app (issue 3; never on in production).

`manage.py sandbox` serves the hub on `--port` (default 8100) and portal *i* on `--port + i`, each
with `DOMAIN=localhost:<port>` and `PROTOCOL=0`. The app talks to it only over HTTP. Modules:
`state` (the world, behind one lock), `rest` (methods, batch, envelope), `limits`, `lifecycle`
(install/uninstall/update, the frame POST), `events` (event delivery thread), `web` (HTTP),
`server` (threads), `phpquery` (PHP-style forms), `directory` (users), `control` (API client).

Hub (`http://localhost:8100`)
    `/oauth/token/` (GET or POST), `/rest/app.info` (the SERVER_ENDPOINT), `/` (index),
    `/_sandbox/deliveries` (`?member_id=&since=<ISO>&after_id=&user_id=`), `/_sandbox/events`,
    and, from loopback only, `/_sandbox/control` (GET state / POST changes) and `/_sandbox/reset`.
Portal (`http://localhost:810i`)
    `/` home with Install / Uninstall (+ "clean") / Bump version, `/marketplace/app/7/` (the app in
    its iframe), `/oauth/authorize/`, `/rest/<method>[.json]`, `/company/`, `/_sandbox/inbox/<id>`.

POST `/_sandbox/control` takes one JSON object; every key is optional:
    `portal`            apply the settings below to that portal only (else globally), and aim
                        the action at it (default portal 1)
    settings            `latency_ms`, `error_rate`, `error_next`, `drop_before_rate`,
                        `drop_before_next`, `drop_after_rate`, `drop_after_next`,
                        `portal_deleted`, `payment_required`, `nfr`, `batch_send`, `rate`,
                        `burst`, `op_cost_ms`, `op_budget_s`, `op_window_s`, `token_ttl`,
                        `old_portal`, `scope`, `event_delay_ms`, `size_rule` ("chars"/"bytes");
                        `*_next` are counters for the next K matching requests. Drops apply to
                        requests that store messages (message.add, or a batch containing it).
    `clock_offset_s`    set the clock offset; `advance_s` adds to it
    `expire_tokens`     true: every current access token (of `portal`, or all) expires now
    `reset_limits`      true: empty the leaky bucket and the execution budgets
    `app_url`           the app's base URL (install `/b24/install/`, handler `/b24/app/`)
    `action`            `issue_token` (`user`, `install_if_needed`), `begin_install` (returns
                        the §1.2 `form`), `install_finish`, `install` (both at once),
                        `uninstall` (`clean`), `bump_version`, `frame_form` (`user`)
The reply is `{"ok": true, "state": {...}, ...}` plus `token`, `form`, `events_queued` or
`expired` depending on the request; a refusal is `{"ok": false, "error": "..."}` with status 400.

Directory: users 1, 2, 5 are admins; 3 and 4 ordinary employees; 6 inactive; 7 extranet.
Network lines: `state.LINE_CODE`, `state.LINE_CODE_2` (active) and `state.INACTIVE_LINE_CODE`.
"""
