# RewardModelVersion and SimulationRun now belong to annotation (its 0010 adopted
# their tables); this app forgets them without touching the database.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('activelearn', '0004_simulationrun'),
        ('annotation', '0010_loop_layer'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(model_name='simulationrun', name='study'),
                migrations.DeleteModel(name='RewardModelVersion'),
                migrations.DeleteModel(name='SimulationRun'),
            ],
        ),
    ]
