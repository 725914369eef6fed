"""recording pauses (PCI) on interactions

Revision ID: 0802_recording_pauses
Revises: 0801_write_seq
Create Date: 2026-12-03 07:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0802_recording_pauses'
down_revision = '0801_write_seq'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_pauses', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_column('recording_pauses')
