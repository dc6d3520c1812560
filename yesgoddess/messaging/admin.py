from django.contrib import admin

from .models import Message, MessageDigest, MessageThread


@admin.register(MessageThread)
class MessageThreadAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "last_message_at", "deleted_at")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "thread", "sender", "recipient", "created_at", "read_at", "deleted_at")
    raw_id_fields = ("thread", "sender", "recipient")


@admin.register(MessageDigest)
class MessageDigestAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "frequency", "period", "status", "message_count", "sent_at")
    list_filter = ("frequency", "status")
    raw_id_fields = ("user",)
