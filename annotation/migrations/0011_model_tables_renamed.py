# The adopted tables take this app's names, and their content types (and so their
# permissions and admin history) follow them.

from django.db import migrations

MOVED = ("rewardmodelversion", "simulationrun")


def content_types_follow(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label="annotation", model=model).exists():
            ContentType.objects.filter(app_label="activelearn", model=model).update(app_label="annotation")


def content_types_return(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label="activelearn", model=model).exists():
            ContentType.objects.filter(app_label="annotation", model=model).update(app_label="activelearn")


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0010_loop_layer'),
        ('activelearn', '0005_models_moved_to_annotation'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.AlterModelTable(name='rewardmodelversion', table=None),
        migrations.AlterModelTable(name='simulationrun', table=None),
        migrations.RunPython(content_types_follow, content_types_return),
    ]
