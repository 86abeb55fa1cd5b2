"""Framework integrations: password validators that reject leaked passwords.

- :mod:`credcheck.contrib.django` — ``CompromisedPasswordValidator`` for ``AUTH_PASSWORD_VALIDATORS``.
- :mod:`credcheck.contrib.flask` — the WTForms validator ``NotCompromised``, ``check_password()`` and a
  Flask-Security-Too ``PasswordUtil``.

Both are thin: they read their settings when a password is first checked (never at import), hand the
password to the one shared core in ``credcheck.contrib._policy`` and turn its answer into the framework's
own error. Importing this package imports neither framework.
"""
