"""The provider webhook endpoint: /anymail/mailgun/tracking/ (anymail's own view and URL
name), and only that one. anymail.urls would also route every other ESP's views, which
accept unauthenticated posts when no basic-auth secret is configured."""

from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from django.urls import path

app_name = "anymail"
urlpatterns = [
    path("mailgun/tracking/", MailgunTrackingWebhookView.as_view(), name="mailgun_tracking_webhook"),
]
