from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "yesgoddess.campaigns"
    label = "campaigns"
