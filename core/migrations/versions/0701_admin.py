"""administration: agents' teams and queue memberships, queues' tier boosts, reason
codes and center settings

Revision ID: 0701_admin
Revises: 0602_agent_state_rollup
Create Date: 2026-12-03 04:30:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0701_admin'
down_revision = '0602_agent_state_rollup'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('queues', sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier_boost_s', sa.JSON(), nullable=True))
    op.create_table('reason_codes',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'code', name=op.f('pk_reason_codes'))
    )
    op.create_table('center_settings',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_center_settings'))
    )


def downgrade() -> None:
    op.drop_table('center_settings')
    op.drop_table('reason_codes')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('tier_boost_s')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('queues')
        batch_op.drop_column('team')
