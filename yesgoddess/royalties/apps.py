from django.apps import AppConfig


class RoyaltiesConfig(AppConfig):
    name = "yesgoddess.royalties"
    label = "royalties"
