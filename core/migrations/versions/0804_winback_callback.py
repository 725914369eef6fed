"""the callback a win-back action scheduled

Revision ID: 0804_winback_callback
Revises: 0803_callbacks
Create Date: 2026-12-03 08:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0804_winback_callback'
down_revision = '0803_callbacks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('winback_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('winback_actions', schema=None) as batch_op:
        batch_op.drop_column('callback_id')
