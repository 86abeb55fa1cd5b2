"""Framework integrations: validators and checks that refuse leaked passwords and leaked username+password pairs.

- :mod:`credcheck.contrib.django` — ``CompromisedPasswordValidator`` for ``AUTH_PASSWORD_VALIDATORS``, and for
  pairs ``PairCheckBackend`` (log-in) and ``CompromisedPairValidator``.
- :mod:`credcheck.contrib.flask` — the WTForms validator ``NotCompromised``, ``check_password()`` and a
  Flask-Security-Too ``PasswordUtil``; for pairs ``check_login()`` and ``PairNotCompromised``.
- :mod:`credcheck.contrib.fastapi` — ``PasswordCheck`` and ``PairCheck``, dependencies for async views.
- :mod:`credcheck.contrib.policy` — what a site does with an answer at each stage (``Policy``), and the
  machinery that applies it (``Guard``: canaries, the throttled log-in check, events, a forced change), which
  the three integrations above (``PolicyValidator``, ``LoginCheckBackend``, ``ForcedChangeMiddleware``;
  ``CredcheckPolicy``; ``LoginPolicy``) and :mod:`credcheck.contrib.middleware` (WSGI and ASGI, the verdict as
  an ``Exposed-Credential-Check`` header) share.

All are thin: they read their settings when a password is first checked (never at import), hand the
credentials to the one shared core — the checks and their failure policy in ``credcheck.contrib._policy``
and ``credcheck.contrib._pairs``, the results in ``credcheck.contrib._verdicts``, the settings in
``credcheck.contrib._rules`` — and turn its answer into the framework's own error. Importing this package
imports no framework.
"""

# A package of integrations: each is imported by its own name (it imports its framework), so nothing here.
__all__: list[str] = []
