"""The worker of one import (started by services/imports/jobs.py, one process per job): runs it at a lower
CPU priority (CHAT_IMPORT_NICE), so the web processes answer first on a busy machine."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from conversations.services.imports import jobs


class Command(BaseCommand):
    help = "Run one import job (the site starts this itself)."

    def add_arguments(self, parser):
        parser.add_argument("job", type=int)

    def handle(self, *args, job: int, **options):
        if settings.CHAT_IMPORT_NICE:
            os.nice(settings.CHAT_IMPORT_NICE)
        jobs.run(job)
