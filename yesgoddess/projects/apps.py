from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "yesgoddess.projects"
    label = "projects"
