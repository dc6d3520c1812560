"""Account and security jobs: each turns its queue message into one call to the accounts
app, where the rules live (`yesgoddess.accounts.cleanup` for tokens, sessions and account
deletion; `yesgoddess.accounts.security` for failed-login monitoring and
password-security cleanup)."""

from __future__ import annotations

from typing import Any

from yesgoddess.accounts import cleanup, security


def cleanup_tokens() -> dict[str, int]:
    """token-cleanup: expired verification/reset tokens and long-used reset tokens."""
    return cleanup.delete_expired_tokens()


def cleanup_sessions() -> dict[str, int]:
    """session-cleanup: expired Django sessions, in short chunks."""
    return cleanup.delete_expired_sessions()


def delete_accounts() -> dict[str, int]:
    """account-deletion: accounts past their grace period erased, then deleted or kept
    anonymised; anonymised ones deleted once free; old login records purged."""
    return cleanup.run_account_deletion()


def monitor_failed_logins() -> dict[str, int]:
    """failed-login-monitor: alerts and lockouts for accounts and IPs under attack."""
    return security.monitor_failed_logins()


def cleanup_password_security() -> dict[str, Any]:
    """password-security-cleanup: lift run-out lockouts, prune remember-me tokens."""
    return security.cleanup_password_security()
