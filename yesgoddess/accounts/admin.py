from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from yesgoddess.core.admin_tools import ReadOnlyAdmin, admin_link, link_audit_entity, link_job_argument

from .models import ApiToken, LoginAttempt, SecurityAlert, User

link_job_argument("user_id", User)
link_audit_entity("user", User)


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    """Django's user admin plus the platform's role and the lockout state (a lockout is a
    time set by the login monitor, never is_active: read-only here)."""

    list_display = ("id", "username", "email", "role", "is_staff", "is_active", "locked_until", "last_login")
    list_filter = ("role", "is_staff", "is_superuser", "is_active", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "username", "email", "first_name", "last_name")
    fieldsets = (
        *UserAdmin.fieldsets,
        ("Platform", {"fields": ("role", "locked_until", "lock_reason", "deleted_at", "anonymised_at")}),
    )
    readonly_fields = ("locked_until", "lock_reason", "deleted_at", "anonymised_at", "last_login", "date_joined")


@admin.register(LoginAttempt)
class LoginAttemptAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "email", "ip_address", "success", "failure_reason", "user_link")
    list_filter = ("success", "failure_reason")
    search_fields = ("email", "=ip_address")
    list_select_related = ("user",)
    date_hierarchy = "timestamp"

    @admin.display(description="user")
    def user_link(self, attempt: LoginAttempt) -> str:
        return admin_link(attempt.user)


@admin.register(SecurityAlert)
class SecurityAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "subject", "window_start", "failures")
    list_filter = ("kind",)
    search_fields = ("subject",)
    date_hierarchy = "created_at"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("key_hash", "prefix", "created_at", "last_used_at")
