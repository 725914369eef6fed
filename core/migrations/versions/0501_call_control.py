"""call control: hold figures, conference time and legs on interactions

Revision ID: 0501_call_control
Revises: 0401_report_figures
Create Date: 2026-12-03 04:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0501_call_control'
down_revision = '0401_report_figures'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('interactions') as batch:
        batch.add_column(sa.Column('hold_count', sa.Integer(), server_default='0',
                                   nullable=False))
        batch.add_column(sa.Column('hold_s', sa.Float(), server_default='0', nullable=False))
        batch.add_column(sa.Column('conference_s', sa.Float(), nullable=True))
        batch.add_column(sa.Column('legs', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('interactions') as batch:
        batch.drop_column('legs')
        batch.drop_column('conference_s')
        batch.drop_column('hold_s')
        batch.drop_column('hold_count')
