from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "yesgoddess.blog"
    label = "blog"
